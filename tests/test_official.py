"""Official stylegan2-ada-pytorch snapshots are read as data: tensors and plain values only, the embedded code of the
official classes never run, anything else refused."""

import builtins
import os
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from gans.errors import ConfigurationError, MissingFileError
from gans.official import OfficialNetwork, read_snapshot

DATA_DIR = os.environ.get("GANS_DATA_DIR")
shared_snapshot = pytest.mark.skipif(not DATA_DIR, reason="GANS_DATA_DIR is not set (the shared real-data folder)")


def official_dir() -> Path:
    return Path(DATA_DIR) / "stylegan2-official"


class Payload:
    """Pickles as a call of ``function(*args)``: what a hostile file makes ``pickle.load`` do."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.fixture
def persistence(monkeypatch):
    """Stand-ins for the modules an official snapshot names (``torch_utils.persistence``, ``dnnlib.util``), so tests
    write pickles in the official layout without NVIDIA's code. The stand-in ``_reconstruct_persistent_obj`` does what
    the official one does with the embedded source: ``exec`` it."""
    module = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        namespace = {}
        exec(meta["module_src"], namespace)  # noqa: S102 (the behaviour the reader must not have)
        return namespace

    _reconstruct_persistent_obj.__module__ = module.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = util.__name__, "EasyDict"
    util.EasyDict = EasyDict
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)
    monkeypatch.setitem(sys.modules, "dnnlib", types.ModuleType("dnnlib"))
    monkeypatch.setitem(sys.modules, "dnnlib.util", util)
    return types.SimpleNamespace(reconstruct=_reconstruct_persistent_obj, EasyDict=EasyDict)


class Persistent:
    """An ``nn.Module`` pickled the way ``torch_utils.persistence`` pickles the official classes: the module's source,
    its class name and its ``__dict__`` (submodules likewise) as the argument of ``_reconstruct_persistent_obj``."""

    def __init__(self, persistence, module: nn.Module, init_kwargs: dict, module_src: str = "") -> None:
        self.persistence, self.module, self.init_kwargs, self.module_src = persistence, module, init_kwargs, module_src

    def __reduce__(self):
        state = dict(vars(self.module), _init_args=(), _init_kwargs=self.init_kwargs)
        state["_modules"] = {
            name: Persistent(self.persistence, child, {}, self.module_src) for name, child in state["_modules"].items()
        }
        meta = {"type": "class", "version": 6, "module_src": self.module_src,
                "class_name": type(self.module).__name__, "state": state}
        return self.persistence.reconstruct, (meta,)


def tiny_module() -> nn.Module:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    module[1].register_buffer("scratch", torch.zeros(2), persistent=False)  # not in a state dict
    return module


def snapshot(persistence, module_src: str = "", **extra) -> dict:
    module = tiny_module()
    kwargs = persistence.EasyDict(z_dim=3, mapping_kwargs=persistence.EasyDict(num_layers=2))
    return dict(
        G=Persistent(persistence, module, kwargs, module_src),
        D=Persistent(persistence, module, {}, module_src),
        G_ema=Persistent(persistence, module, kwargs, module_src),
        training_set_kwargs={"resolution": 32, "use_labels": False},
        **extra,
    )


@pytest.mark.parametrize("protocol", [3, 4])  # NVIDIA's files were written with protocol 3 (Python 3.7)
def test_a_snapshot_in_the_official_layout_is_read_as_plain_data(persistence, tmp_path, protocol):
    path = tmp_path / "snapshot.pkl"
    path.write_bytes(pickle.dumps(snapshot(persistence), protocol=protocol))

    data = read_snapshot(path)

    assert set(data) == {"G", "D", "G_ema", "training_set_kwargs", "augment_pipe"}
    assert data["augment_pipe"] is None and data["training_set_kwargs"] == {"resolution": 32, "use_labels": False}
    generator = data["G"]
    assert isinstance(generator, OfficialNetwork) and generator.class_name == "Sequential"
    assert generator.init_kwargs == {"z_dim": 3, "mapping_kwargs": {"num_layers": 2}}
    assert type(generator.init_kwargs["mapping_kwargs"]) is dict  # EasyDict read as a plain dict
    expected = tiny_module().state_dict()
    assert list(generator.state_dict) == list(expected)  # the non-persistent buffer is left out, as state_dict does
    for name, tensor in expected.items():
        assert torch.equal(generator.state_dict[name], tensor) and not generator.state_dict[name].requires_grad


def test_numpy_scalars_are_decoded_without_numpy_unpickling_anything(persistence, tmp_path):
    np = pytest.importorskip("numpy")
    data = snapshot(persistence)
    data["G"].init_kwargs["gain"] = np.float64(0.25)
    data["G"].init_kwargs["count"] = np.int32(-7)
    path = tmp_path / "snapshot.pkl"
    path.write_bytes(pickle.dumps(data))

    kwargs = read_snapshot(path)["G"].init_kwargs

    assert kwargs["gain"] == 0.25 and type(kwargs["gain"]) is float
    assert kwargs["count"] == -7 and type(kwargs["count"]) is int


def hostile_file(tmp_path: Path, content: dict, marker: Path) -> Path:
    """Writes ``content`` as a pickle after checking the control: a plain ``pickle.load`` of it creates ``marker``."""
    payload = pickle.dumps(content)
    try:
        result = pickle.loads(payload)
    except RuntimeError:  # torch reads a storage's bytes after running them; the damage is done by then
        result = None
    if isinstance(result, dict) and hasattr(result.get("augment_pipe"), "close"):
        result["augment_pipe"].close()
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "hostile.pkl"
    path.write_bytes(payload)
    return path


def test_embedded_source_is_never_run(persistence, tmp_path):
    marker = tmp_path / "pwned"
    source = f"open({str(marker)!r}, 'w').write('the embedded code ran')\n"
    path = hostile_file(tmp_path, snapshot(persistence, module_src=source), marker)

    data = read_snapshot(path)

    assert not marker.exists()
    assert "module_src" not in repr(data) and data["G"].class_name == "Sequential"


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda marker: Payload(os.system, f"touch {marker}"), r"(posix|nt)\.system"),
        (lambda marker: Payload(builtins.exec, f"open({str(marker)!r}, 'w')"), r"builtins\.exec"),
        (lambda marker: Payload(builtins.eval, f"open({str(marker)!r}, 'w')"), r"builtins\.eval"),
        (lambda marker: Payload(open, str(marker), "w"), r"io\.open"),
    ],
)
def test_a_global_outside_the_allow_list_is_refused_naming_the_file_and_the_global(
    persistence, tmp_path, call, named
):
    marker = tmp_path / "pwned"
    path = hostile_file(tmp_path, snapshot(persistence, augment_pipe=call(marker)), marker)

    with pytest.raises(ConfigurationError, match=rf"'{path}' names the global {named}, which .* does not allow"):
        read_snapshot(path)
    assert not marker.exists()


def test_storage_bytes_holding_a_pickle_are_not_unpickled_freely(persistence, tmp_path):
    marker = tmp_path / "pwned"
    inner = pickle.dumps(Payload(builtins.exec, f"open({str(marker)!r}, 'w')"), protocol=2)
    storage = Payload(torch.storage._load_from_bytes, inner)  # how a tensor's storage is pickled
    path = hostile_file(tmp_path, snapshot(persistence, augment_pipe=storage), marker)

    with pytest.raises(ConfigurationError, match=rf"cannot read '{path}' as an official StyleGAN2-ADA snapshot"):
        read_snapshot(path)
    assert not marker.exists()


def test_a_truncated_or_foreign_file_gets_one_error_naming_it(persistence, tmp_path):
    whole = pickle.dumps(snapshot(persistence))
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(whole[: len(whole) // 2])
    text = tmp_path / "notes.pkl"
    text.write_text("not a pickle at all\n")
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))

    for path in (truncated, text):
        with pytest.raises(ConfigurationError, match=rf"cannot read '{path}' as an official StyleGAN2-ADA snapshot"):
            read_snapshot(path)
    with pytest.raises(ConfigurationError, match=rf"'{other}' is not an official StyleGAN2-ADA snapshot"):
        read_snapshot(other)
    with pytest.raises(MissingFileError, match="missing.pkl' does not exist"):
        read_snapshot(tmp_path / "missing.pkl")


@shared_snapshot
def test_the_shared_official_snapshot():
    data = read_snapshot(official_dir() / "sg2_32.pkl")
    expected = torch.load(official_dir() / "sg2_32.expected.pt", weights_only=True)

    assert [data[name].class_name for name in ("G", "D", "G_ema")] == ["Generator", "Discriminator", "Generator"]
    assert data["augment_pipe"] is None and data["training_set_kwargs"] == {"resolution": 32, "use_labels": False}
    assert data["G"].init_kwargs == {
        "z_dim": 64, "c_dim": 0, "w_dim": 64, "img_resolution": 32, "img_channels": 3,
        "mapping_kwargs": {"num_layers": 2},
        "synthesis_kwargs": {"channel_base": 1024, "channel_max": 128, "num_fp16_res": 0, "conv_clamp": None},
    }
    assert data["D"].init_kwargs["epilogue_kwargs"] == {"mbstd_group_size": 4}
    generator, discriminator = data["G_ema"].state_dict, data["D"].state_dict
    # Key counts and shapes from the official code: cd stylegan2-ada-pytorch && python -c "import legacy;
    # d = legacy.load_network_pkl(open('sg2_32.pkl', 'rb')); g = d['G_ema'].state_dict(); print(len(g),
    # g['synthesis.b4.const'].shape, ...)"
    assert len(generator) == 75 and len(discriminator) == 37
    assert generator["synthesis.b4.const"].shape == (128, 4, 4)
    assert generator["synthesis.b32.torgb.weight"].shape == (3, 32, 1, 1)
    assert generator["mapping.fc0.weight"].shape == (64, 64)
    assert discriminator["b32.fromrgb.weight"].shape == (32, 3, 1, 1)
    assert discriminator["b4.out.weight"].shape == (1, 128)
    assert torch.equal(generator["mapping.w_avg"], expected["w_avg"])
    # The buffers (resample filters, noise_const) are in the state dict, the parameters alone make the official count.
    for name, count in expected["params"].items():
        noise_and_filters = ("resample_filter", "noise_const", "w_avg")
        params = [t for key, t in data[name].state_dict.items() if not key.endswith(noise_and_filters)]
        assert sum(t.numel() for t in params) == count
