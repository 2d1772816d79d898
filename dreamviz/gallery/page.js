(function(){
const D=JSON.parse(document.getElementById('gallery-data').textContent);
const V=document.getElementById('viewer'),big=V.querySelector('img');
let cur=-1;
function fmt(x){return x===null||x===undefined?'\u2013':(+x).toPrecision(4)}
function show(i){
  const u=D.units[i];if(!u)return;cur=i;
  big.src=u.src;big.alt=u.unit;
  V.querySelector('h3').textContent=u.unit+(u.class_name?' \u00b7 '+u.class_name:'');
  const dl=V.querySelector('dl');dl.innerHTML='';
  const rows=[['objective',fmt(u.objective)],['vs natural',u.activation_ratio===null?
    '\u2013':fmt(u.activation_ratio)+'\u00d7 the max over photo crops'],['seed',u.seed],
    ['time',fmt(u.seconds)+' s'],['status',u.status]];
  for(const [k,v] of rows){const dt=document.createElement('dt'),dd=document.createElement('dd');
    dt.textContent=k;dd.textContent=v;dl.append(dt,dd);}
  V.querySelector('.from').textContent=u.from||'';
  V.querySelector('.cmd').textContent=u.command||'';
  V.querySelector('.again').hidden=!u.from;
  V.querySelector('.again-alt').hidden=!u.command;
  V.querySelector('.copy').hidden=!u.from;
  V.querySelector('.recipe').textContent=JSON.stringify(
    Object.assign({unit:u.unit,seed:u.seed,base_seed:D.settings.seed},D.settings,
      {seed:u.seed}),null,1);
  V.hidden=false;
}
function hide(){V.hidden=true;cur=-1}
document.querySelectorAll('.tile').forEach(t=>t.addEventListener('click',()=>show(+t.dataset.i)));
V.addEventListener('click',e=>{if(e.target===V)hide()});
V.querySelector('.close').addEventListener('click',hide);
V.querySelector('.copy').addEventListener('click',()=>{
  const t=V.querySelector('.from').textContent;
  if(navigator.clipboard)navigator.clipboard.writeText(t).catch(()=>{});});
document.addEventListener('keydown',e=>{
  if(V.hidden)return;
  if(e.key==='Escape')hide();
  if(e.key==='ArrowRight')show(Math.min(cur+1,D.units.length-1));
  if(e.key==='ArrowLeft')show(Math.max(cur-1,0));});
const zoom=document.getElementById('zoom');
if(zoom)zoom.addEventListener('input',()=>
  document.documentElement.style.setProperty('--tile',zoom.value+'px'));
document.querySelectorAll('.tile img').forEach(im=>im.addEventListener('error',()=>
  im.parentElement.classList.add('bad')));
function loaded(im){return new Promise(r=>{
  if(im.complete&&im.naturalWidth>0)return r();
  im.addEventListener('load',()=>r(),{once:true});
  im.addEventListener('error',()=>r(),{once:true});});}
async function selftest(){
  const imgs=[...document.querySelectorAll('.tile img')];
  const lazy=imgs.filter(im=>im.loading==='lazy').length;
  imgs.forEach(im=>{im.loading='eager'});
  await Promise.all(imgs.map(loaded));
  const broken=imgs.filter(im=>!(im.complete&&im.naturalWidth>0)).map(im=>im.getAttribute('src'));
  const first=document.querySelector('.tile');
  let viewer=false,bigOk=false,cmd='';
  if(first){first.click();viewer=!V.hidden&&getComputedStyle(V).display!=='none';
    await loaded(big);bigOk=big.naturalWidth>0;cmd=V.querySelector('.from').textContent;}
  const r={images:imgs.length,broken:broken,viewer:viewer,big_image:bigOk,command:cmd,
    lazy:lazy,units:D.units.length};
  const wantCmd=D.units.length>0&&!!D.units[0].from;
  r.ok=imgs.length>0&&broken.length===0&&viewer&&bigOk&&(cmd.length>0||!wantCmd);
  const pre=document.createElement('pre');pre.id='selftest-result';
  pre.textContent=JSON.stringify(r);document.body.append(pre);
  document.title='selftest:'+(r.ok?'ok':'fail');
}
const tz=location.hash.match(/tile=(\d+)/);
if(tz){document.documentElement.style.setProperty('--tile',tz[1]+'px');if(zoom)zoom.value=tz[1];}
const m=location.hash.match(/view=(\d+)/);
if(location.hash==='#selftest')selftest();else if(m)show(+m[1]);
})();
