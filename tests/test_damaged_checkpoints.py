"""A checkpoint is untrusted input: every damaged or hostile one is refused at load with one sentence, in the loader, the
CLI and the app's model picker; what training legitimately writes keeps loading."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch
from conftest import make_checkpoint
from streamlit.testing.v1 import AppTest

from emoji_mirror.app import loaders as ui
from emoji_mirror.checkpoint import CheckpointError, load_model
from emoji_mirror.paths import CHECKPOINT_ENV, REPO_ROOT
from emoji_mirror.predict import main
from emoji_mirror.preprocessing import Preprocessing

PHOTO_PAGE = str(REPO_ROOT / "pages" / "photo.py")


def drop(key):
    return lambda p: p.pop(key)


def set_in(*keys, value):
    def change(payload):
        target = payload
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value

    return change


def nan_weights(payload):
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][name][0] = math.nan


def overflowing(payload):
    """Finite weights so large that every score overflows (the network then answers NaN)."""
    for value in payload["state_dict"].values():
        if value.is_floating_point() and value.dim() == 2:
            value.fill_(3e38)


# name -> how the payload is damaged -> what the one-line message says
DAMAGED = {
    "no_state_dict": (drop("state_dict"), "'state_dict' is a required property"),
    "no_arch": (drop("arch"), "'arch' is a required property"),
    "no_classes": (drop("classes"), "'classes' is a required property"),
    "joy": (lambda p: p["classes"].__setitem__(3, "joy"), "classes/3: 'joy' is not one of"),
    "state_dict_list": (lambda p: p.update(state_dict=list(p["state_dict"].values())), "state_dict: [tensor("),
    "state_dict_number": (set_in("state_dict", "head.6.bias", value=3), "state_dict/head.6.bias: 3 is not a tensor"),
    "version_text": (set_in("version", value="2"), "version: '2' is not of type 'integer'"),
    "version_newer": (set_in("version", value=2), "format version 2; this code reads up to 1: update Emoji Mirror"),
    "meta_list": (set_in("meta", value=[1, 2]), "meta: [1, 2] is not of type 'object'"),
    "accuracy_text": (set_in("meta", "metrics", "fer2013/private_test", "accuracy", value="high"),
                      "meta/metrics/fer2013/private_test/accuracy: 'high' is not of type 'number'"),
    "input_size_0": (set_in("preprocessing", "input_size", value=0), "preprocessing/input_size: 0 is less than the minimum of 8"),
    "input_size_text": (set_in("preprocessing", "input_size", value="48"), "preprocessing/input_size: '48' is not of type 'integer'"),
    "margin": (set_in("preprocessing", "face_margin", value=-0.6), "preprocessing/face_margin: -0.6 is less than the minimum of -0.2"),
    "offset": (set_in("preprocessing", "face_offset_y", value=0.7), "preprocessing/face_offset_y: 0.7 is greater than the maximum of 0.5"),
    "std_0": (set_in("preprocessing", "std", value=0.0), "preprocessing/std: 0.0 is less than the minimum of 0.01"),
    "std_tiny": (set_in("preprocessing", "std", value=1e-300), "preprocessing/std: 1e-300 is less than the minimum of 0.01"),
    "mean_huge": (set_in("preprocessing", "mean", value=1e308), "preprocessing/mean: 1e+308 is greater than the maximum of 2"),
    "overflow": (overflowing, "gives NaN or infinite scores for plain black, grey and white faces"),
    "std_nan": (set_in("preprocessing", "std", value=math.nan), "preprocessing/std: nan is not of type 'number' (numbers must be finite)"),
    "mean_inf": (set_in("preprocessing", "mean", value=math.inf), "preprocessing/mean: inf is not of type 'number' (numbers must be finite)"),
    "nan_weights": (nan_weights, "hold NaN or infinite values"),
    "in_chans": (set_in("arch_kwargs", value={"in_chans": 3}), "arch_kwargs: Additional properties are not allowed ('in_chans' was unexpected)"),
    "huge": (set_in("arch_kwargs", value={"widths": [100_000]}), "arch_kwargs/widths/0: 100000 is greater than the maximum of 2048"),
    "kwargs_list": (set_in("arch_kwargs", value=["drop"]), "arch_kwargs: ['drop'] is not of type 'object'"),
    "unknown_arch": (set_in("arch", value="no_such_net"), "unknown model 'no_such_net'"),
    "eight_classes": (set_in("classes", value=[*"angry disgust fear happy sad surprise neutral contempt".split()]), "do not fit architecture 'baseline_cnn'"),
}


def damaged(folder, name: str):
    """A copy of a valid checkpoint damaged as DAMAGED[name] says, saved as <name>.pt."""
    payload = torch.load(make_checkpoint(folder / "valid.pt"), weights_only=True)
    DAMAGED[name][0](payload)
    torch.save(payload, folder / f"{name}.pt")
    return folder / f"{name}.pt"


@pytest.mark.parametrize("name", DAMAGED)
def test_each_damage_is_one_sentence_at_load(tmp_path, name):
    path = damaged(tmp_path, name)
    with pytest.raises(CheckpointError) as refused:
        load_model(path)
    message = str(refused.value)
    assert DAMAGED[name][1] in message and message.startswith(str(path)) and "\n" not in message, message
    assert len(message) < 400, message


def test_a_file_over_1_gib_is_refused_unread(tmp_path, monkeypatch):
    huge = tmp_path / "huge.pt"
    with open(huge, "wb") as f:
        f.truncate((1 << 30) + 1)  # sparse: no disk used
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a 1 GiB checkpoint was read"))
    with pytest.raises(CheckpointError, match=r"huge\.pt is 1\.0 GiB; checkpoints are at most 1 GiB \(refused unread\)"):
        load_model(huge)


def test_an_empty_file_is_named_empty(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt is empty \(0 bytes\)"):
        load_model(empty)


@pytest.mark.parametrize("name", ["empty", "no_state_dict", "joy", "input_size_0", "std_0", "nan_weights", "accuracy_text", "huge"])
def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path, capsys, name):
    if name == "empty":
        path = tmp_path / "empty.pt"
        path.write_bytes(b"")
    else:
        path = damaged(tmp_path, name)
    assert main([str(tmp_path / "photo.jpg"), "--checkpoint", str(path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"error: {path}") and err.count("\n") == 1 and "Traceback" not in err, err


def test_what_training_writes_keeps_loading(tmp_path):
    """Training state in last.pt, history/config in meta, an old checkpoint without the newer preprocessing fields,
    and preprocessing fields this code does not know yet."""
    payload = torch.load(make_checkpoint(tmp_path / "valid.pt"), weights_only=True)
    state = payload["state_dict"]
    payload.update(raw_state_dict=state, ema=state, optimizer={"state": {}, "param_groups": []}, scheduler={"last_epoch": 3}, train_state={"epoch": 3})
    payload["meta"].update(history=[{"epoch": 1, "train_loss": 1.5}], config={"lr": 0.001, "amp": "torch.bfloat16"}, epoch=3, params=390_000,
                           metrics={"fer2013/public_test": {"accuracy": 55.2, "macro_f1": 50.1, "n": 3589, "mean_recall": 51.0}})
    payload["preprocessing"] = {"input_size": 48, "mean": 0.5, "std": 0.25, "future_field": [1, 2]}
    torch.save(payload, tmp_path / "last.pt")
    loaded = load_model(tmp_path / "last.pt")
    assert loaded.preprocessing == Preprocessing() and loaded.meta["epoch"] == 3


def test_the_schema_covers_every_preprocessing_field():
    from emoji_mirror.schemas import PREPROCESSING

    assert set(PREPROCESSING["properties"]) == {f.name for f in fields(Preprocessing)}


@pytest.mark.slow
def test_vit_never_downloads_or_opens_a_file_a_checkpoint_names(tmp_path, monkeypatch):
    """`pretrained` and `pretrained_file` only choose initial weights; a checkpoint's own weights replace them."""
    import timm.models._builder

    def refuse(*args, **kwargs):
        raise AssertionError("the loader asked timm for pretrained weights")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", refuse)
    path = make_checkpoint(tmp_path / "vit.pt", "vit_tiny")
    payload = torch.load(path, weights_only=True)
    payload["arch_kwargs"] = {"pretrained": True, "pretrained_file": str(tmp_path / "elsewhere.safetensors"), "patch_size": 8}
    torch.save(payload, path)
    loaded = load_model(path)
    torch.testing.assert_close(loaded.model.state_dict()["head.weight"], payload["state_dict"]["head.weight"])

    payload["arch_kwargs"] = {"img_size": 64}  # builds, but not for the 48 px faces its preprocessing makes
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not fit architecture 'vit_tiny'"):
        load_model(path)


@pytest.mark.slow
def test_the_model_picker_marks_damaged_files_and_the_page_explains_the_one_picked(tmp_path, monkeypatch):
    valid = make_checkpoint(tmp_path / "valid.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    for name in ("joy", "input_size_0", "state_dict_list"):
        damaged(tmp_path, name)
    monkeypatch.setattr(ui, "list_checkpoints", lambda: sorted(tmp_path.glob("*.pt")))
    monkeypatch.setenv(CHECKPOINT_ENV, str(valid))
    app = AppTest.from_file(PHOTO_PAGE, default_timeout=120).run()
    assert not app.exception and not app.error, app.exception
    picker = app.sidebar.selectbox[0]
    assert sorted(picker.options) == ["empty · damaged or not a checkpoint", "input_size_0 · damaged or not a checkpoint",
                              "joy · damaged or not a checkpoint", "state_dict_list · damaged or not a checkpoint", "valid · not evaluated"]
    assert app.file_uploader, "the valid default model is in use"
    for index, label in enumerate(picker.options):
        if "damaged" not in label:
            continue
        app.sidebar.selectbox[0].select_index(index).run()
        assert not app.exception, app.exception
        name = label.split(" ·")[0]
        assert len(app.error) == 1 and f"Cannot use model `{name}.pt`" in app.error[0].value and "Fix:" in app.error[0].value
        assert not app.file_uploader
