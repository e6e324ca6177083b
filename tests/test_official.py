"""Official stylegan2-ada-pytorch snapshots are read as data: tensors and plain values only, the embedded code of the
official classes never run, anything else refused."""

import builtins
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
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

    def __init__(self, persistence, module: nn.Module, init_kwargs: dict, module_src: str = "",
                 class_name: str | None = None) -> None:
        self.persistence, self.module, self.init_kwargs, self.module_src = persistence, module, init_kwargs, module_src
        self.class_name = class_name or type(module).__name__

    def __reduce__(self):
        state = dict(vars(self.module), _init_args=(), _init_kwargs=self.init_kwargs)
        state["_modules"] = {
            name: Persistent(self.persistence, child, {}, self.module_src) for name, child in state["_modules"].items()
        }
        meta = {"type": "class", "version": 6, "module_src": self.module_src, "class_name": self.class_name,
                "state": state}
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


def test_a_file_cannot_change_the_readers_functions_for_later_files(persistence, tmp_path):
    # pickle's BUILD on a global sets its attributes: here the defaults of what torch._utils._rebuild_tensor_v2
    # resolves to, which would make every later file's tensors look like tensors with metadata (refused).
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(b"\x80\x03ctorch._utils\n_rebuild_tensor_v2\n"
                        b"N}X\x0c\x00\x00\x00__defaults__(\x88NX\x04\x00\x00\x00evilts\x86b0}.")
    with pytest.raises(ConfigurationError, match=f"'{hostile}'"):
        read_snapshot(hostile)
    path = tmp_path / "snapshot.pkl"
    path.write_bytes(pickle.dumps(snapshot(persistence)))
    assert set(read_snapshot(path)["G"].state_dict) == set(tiny_module().state_dict())


def test_a_persistent_object_whose_state_the_file_replaces_gets_one_error(persistence, tmp_path):
    class Rebuilt(Persistent):
        def __reduce__(self):  # the official record, then a BUILD that swaps the attribute dict for a list
            return (*super().__reduce__(), {"state": [1, 2]})

    data = snapshot(persistence)
    data["G"] = Rebuilt(persistence, tiny_module(), {})
    path = tmp_path / "rebuilt.pkl"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(ConfigurationError, match=f"'{path}'"):
        read_snapshot(path)


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


# ---------------------------------------------------------------------------------------------------------------------
# A gans.StyleGAN2 from a snapshot: load_gan, gans.sample, gans.convert
# ---------------------------------------------------------------------------------------------------------------------

TINY_G = {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 8, "img_channels": 1,
          "mapping_kwargs": {"num_layers": 2}, "synthesis_kwargs": {"channel_base": 64, "channel_max": 16}}
TINY_D = {"c_dim": 0, "img_resolution": 8, "img_channels": 1, "channel_base": 64, "channel_max": 16,
          "epilogue_kwargs": {"mbstd_group_size": 2}}


def tiny_official_snapshot(persistence, path: Path, g_kwargs=TINY_G, d_kwargs=TINY_D) -> tuple[Path, dict]:
    """A snapshot in the official layout of tiny networks with the official state dicts (ours, whose names are the
    official ones), each of G, D, G_ema with its own random weights; returns the path and the networks."""
    from gans.nets.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

    torch.manual_seed(1)
    networks = {"G": StyleGAN2Generator(**g_kwargs), "D": StyleGAN2Discriminator(**d_kwargs),
                "G_ema": StyleGAN2Generator(**g_kwargs)}
    for network in networks.values():
        with torch.no_grad():
            for tensor in network.state_dict().values():
                tensor.add_(torch.randn_like(tensor) * 0.1)  # w_avg and noise too: every tensor must arrive
    kwargs = {"G": g_kwargs, "D": d_kwargs, "G_ema": g_kwargs}
    classes = {"G": "Generator", "D": "Discriminator", "G_ema": "Generator"}
    data = {name: Persistent(persistence, network, kwargs[name], class_name=classes[name])
            for name, network in networks.items()}
    path.write_bytes(pickle.dumps({**data, "augment_pipe": None, "training_set_kwargs": None}, protocol=3))
    return path, networks


def published_kwargs(persistence) -> tuple[dict, dict]:
    """The constructor arguments as NVIDIA's published files (converted from TensorFlow by the official legacy.py)
    record them, all of them spelled out in EasyDicts, here for tiny networks."""
    easy = persistence.EasyDict
    g_kwargs = easy(TINY_G, mapping_kwargs=easy(num_layers=2, embed_features=None, layer_features=None,
                                                activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.995),
                    synthesis_kwargs=easy(channel_base=64, channel_max=16, num_fp16_res=1, conv_clamp=256,
                                          architecture="skip", resample_filter=[1, 3, 3, 1], use_noise=True,
                                          activation="lrelu"))
    d_kwargs = easy(TINY_D, architecture="resnet", num_fp16_res=1, conv_clamp=256, cmap_dim=None,
                    block_kwargs=easy(activation="lrelu", resample_filter=[1, 3, 3, 1], freeze_layers=0),
                    mapping_kwargs=easy(num_layers=0, embed_features=None, layer_features=None, activation="lrelu",
                                        lr_multiplier=0.1),
                    epilogue_kwargs=easy(mbstd_group_size=None, mbstd_num_channels=1, activation="lrelu"))
    return g_kwargs, d_kwargs


@pytest.mark.parametrize("published", [False, True], ids=["trained", "published"])
def test_a_stylegan2_is_built_from_a_snapshot_and_converted(persistence, tmp_path, capsys, published):
    from gans import StyleGAN2
    from gans.convert import main as convert_main
    from gans.loading import load_gan
    from gans.official import build_stylegan2

    kwargs = published_kwargs(persistence) if published else (TINY_G, TINY_D)
    path, networks = tiny_official_snapshot(persistence, tmp_path / "tiny.pkl", *kwargs)
    model = build_stylegan2(path)
    assert type(model) is StyleGAN2 and not model.training
    assert (model.latent_dim, model.w_dim, model.image_size, model.channels, model.num_classes) == (8, 8, 8, 1, 0)
    for name, network in (("G", model.generator), ("D", model.discriminator), ("G_ema", model.generator_ema)):
        for key, tensor in networks[name].state_dict().items():
            assert torch.equal(network.state_dict()[key], tensor), (name, key)

    convert_main(["--pkl", str(path), "--out", str(tmp_path / "model.ckpt")])
    convert_main(["--pkl", str(path), "--out", str(tmp_path / "g.safetensors")])
    convert_main(["--pkl", str(path), "--out", str(tmp_path / "raw.safetensors"), "--raw"])
    assert "tiny.pkl as" in capsys.readouterr().out

    z = torch.randn(4, 8)
    expected = model.sample(z=z, truncation_psi=0.5)
    for loaded in (load_gan(path), load_gan(tmp_path / "model.ckpt"), load_gan(tmp_path / "g.safetensors")):
        assert type(loaded) is StyleGAN2 and torch.equal(loaded.sample(z=z, truncation_psi=0.5), expected)
    checkpoint = load_gan(tmp_path / "model.ckpt")  # the whole model: D and the raw G too
    assert torch.equal(checkpoint.sample(z=z, ema=False), model.sample(z=z, ema=False))
    assert torch.equal(checkpoint.discriminator.b8.conv0.weight, networks["D"].b8.conv0.weight)
    assert torch.equal(load_gan(tmp_path / "raw.safetensors").sample(z=z), model.sample(z=z, ema=False))


def test_gans_sample_takes_the_style_controls_of_a_snapshot(persistence, tmp_path):
    from gans.official import build_stylegan2
    from gans.sample import main as sample_main

    path, _ = tiny_official_snapshot(persistence, tmp_path / "tiny.pkl")
    model = build_stylegan2(path)
    for args, kwargs in [
        ([], {}),
        (["--trunc", "0.5", "--trunc-cutoff", "2"], {"truncation_psi": 0.5, "truncation_cutoff": 2}),
        (["--noise-mode", "none"], {"noise_mode": "none"}),
    ]:
        out = tmp_path / "x.pt"
        sample_main(["--ckpt", str(path), "--seeds", "3,1", "--out", str(out), *args])
        z = torch.cat([torch.from_numpy(np.random.RandomState(s).randn(1, 8)) for s in (3, 1)]).float()
        assert torch.equal(torch.load(out), model.sample(z=z, **kwargs)), args
    # The controls reach the networks: each changes the images.
    images = {}
    for args in ([], ["--trunc", "0"], ["--noise-mode", "random"]):
        sample_main(["--ckpt", str(path), "--seeds", "3,1", "--out", str(out), *args])
        images[tuple(args)] = torch.load(out)
    assert not torch.equal(images[()], images[("--trunc", "0")])
    assert not torch.equal(images[()], images[("--noise-mode", "random")])
    w_avg_image = model.synthesis(model.w_avg.expand(1, model.num_ws, -1)).clamp(-1, 1)
    assert torch.allclose(images[("--trunc", "0")], w_avg_image.expand(2, -1, -1, -1), atol=1e-6)


def test_a_conditional_snapshot_takes_class_labels(persistence, tmp_path):
    from gans.official import build_stylegan2
    from gans.sample import main as sample_main

    g_kwargs, d_kwargs = {**TINY_G, "c_dim": 3}, {**TINY_D, "c_dim": 3}
    path, networks = tiny_official_snapshot(persistence, tmp_path / "cond.pkl", g_kwargs, d_kwargs)
    model = build_stylegan2(path)
    assert model.num_classes == 3

    sample_main(["--ckpt", str(path), "--seeds", "0-1", "--class", "2", "--out", str(tmp_path / "c.pt")])

    z = torch.cat([torch.from_numpy(np.random.RandomState(s).randn(1, 8)) for s in (0, 1)]).float()
    c = torch.nn.functional.one_hot(torch.tensor([2, 2]), 3).float()  # generate.py's label: one-hot of --class
    networks["G_ema"].eval()
    expected = networks["G_ema"](z, c, noise_mode="const").images.clamp(-1, 1)
    assert torch.allclose(torch.load(tmp_path / "c.pt"), expected, atol=1e-6)
    # A discriminator converted by the official legacy.py from TensorFlow (the published conditional CIFAR-10 file)
    # maps its label without layers: mapping_kwargs num_layers=0.
    legacy_d = {**d_kwargs, "mapping_kwargs": {"num_layers": 0, "embed_features": None, "layer_features": None,
                                               "activation": "lrelu", "lr_multiplier": 0.1}}
    path, networks = tiny_official_snapshot(persistence, tmp_path / "legacy.pkl", g_kwargs, legacy_d)
    model = build_stylegan2(path)
    images = torch.zeros(2, 1, 8, 8)
    torch.testing.assert_close(model.critic(images, labels=torch.tensor([0, 2])),
                               networks["D"](images, torch.eye(3)[[0, 2]]).flatten())


def test_snapshots_that_do_not_fit_are_refused(persistence, tmp_path, capsys):
    from gans.convert import main as convert_main
    from gans.official import build_stylegan2

    path, _ = tiny_official_snapshot(persistence, tmp_path / "tiny.pkl")
    data = read_snapshot(path)
    for name, change, message in [
        ("G", lambda n: OfficialNetwork("SynthesisNetwork", n.init_kwargs, n.state_dict), "G is a SynthesisNetwork"),
        ("G_ema", lambda n: OfficialNetwork(n.class_name, {**n.init_kwargs, "w_dim": 4}, n.state_dict),
         "G_ema is built with other arguments than G"),
        ("D", lambda n: OfficialNetwork(n.class_name, {**n.init_kwargs, "img_resolution": 16}, n.state_dict),
         "D's img_resolution differs from G's"),
        # StyleGAN3's networks share the class names, not the layers.
        ("G_ema", lambda n: OfficialNetwork(n.class_name, n.init_kwargs, {"synthesis.L0_36_512.weight": torch.zeros(1),
                                                                          **n.state_dict}),
         "the weights of G_ema do not fit gans.StyleGAN2's Generator"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            build_stylegan2({**data, name: change(data[name])})

    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps(Payload(os.system, "true")))
    for args, message in [
        (["--pkl", str(hostile), "--out", str(tmp_path / "x.ckpt")], "names the global posix.system"),
        (["--pkl", str(path), "--out", str(tmp_path / "x.pt")], "--out '" + str(tmp_path / "x.pt") + "': expected a"),
        (["--pkl", str(tmp_path / "missing.pkl"), "--out", str(tmp_path / "x.ckpt")], "missing.pkl' does not exist"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            convert_main(args)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.pkl", "tiny.pkl"]


def test_a_stylegan3_or_a_cyclic_snapshot_gets_one_message(persistence, tmp_path, capsys):
    from gans.convert import main as convert_main
    from gans.nets.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

    # StyleGAN3's train.py gives its Generator the synthesis arguments at the top level of init_kwargs (and some that
    # StyleGAN2 has not): a real StyleGAN3 snapshot fails before its weights are compared.
    stylegan3_g = {**{k: v for k, v in TINY_G.items() if k != "synthesis_kwargs"}, "channel_base": 64,
                   "channel_max": 16, "magnitude_ema_beta": 0.999}
    networks = {"G": StyleGAN2Generator(**TINY_G), "D": StyleGAN2Discriminator(**TINY_D),
                "G_ema": StyleGAN2Generator(**TINY_G)}
    kwargs = {"G": stylegan3_g, "D": TINY_D, "G_ema": stylegan3_g}
    classes = {"G": "Generator", "D": "Discriminator", "G_ema": "Generator"}
    data = {name: Persistent(persistence, network, kwargs[name], class_name=classes[name])
            for name, network in networks.items()}
    stylegan3 = tmp_path / "stylegan3.pkl"
    stylegan3.write_bytes(pickle.dumps({**data, "augment_pipe": None, "training_set_kwargs": None}, protocol=3))
    # A file whose plain data refers to itself (pickle's memo allows it).
    loop: list = []
    loop.append(loop)
    cyclic = tmp_path / "cyclic.pkl"
    cyclic.write_bytes(pickle.dumps({**data, "augment_pipe": None, "training_set_kwargs": loop}, protocol=3))
    for path, message in [(stylegan3, "G's init_kwargs do not build gans.StyleGAN2's Generator"),
                          (cyclic, "nested too deeply")]:
        with pytest.raises(SystemExit) as exit_info:
            convert_main(["--pkl", str(path), "--out", str(tmp_path / "x.ckpt")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and str(path) in err and "Traceback" not in err


@shared_snapshot
def test_the_shared_snapshot_samples_as_the_official_generate_py(tmp_path):
    from gans.loading import load_gan
    from gans.sample import main as sample_main

    model = load_gan(official_dir() / "sg2_32.pkl")
    expected = torch.load(official_dir() / "sg2_32.expected.pt", weights_only=True)
    z, c = expected["z"], expected["c"]
    # G_ema is the EMA generator, G the trained one, D the discriminator (each network's own reproduction is
    # tests/test_stylegan2_nets.py's).
    assert torch.equal(model.mapping(z), expected["ws"])
    assert torch.allclose(model.sample(z=z), expected["img_ema"].clamp(-1, 1), atol=1e-4)
    assert torch.allclose(model.sample(z=z, truncation_psi=0.7), expected["img_ema_psi07"].clamp(-1, 1), atol=1e-4)
    assert torch.allclose(model.sample(z=z, ema=False), expected["img_G"].clamp(-1, 1), atol=1e-4)
    assert torch.allclose(model.discriminator(expected["img_ema"][:4], c[:4]), expected["d_scores"], atol=1e-4)

    sample_main(["--ckpt", str(official_dir() / "sg2_32.pkl"), "--seeds", "0,5", "--trunc", "0.7",
                 "--out", str(tmp_path / "seeds.pt")])
    images = torch.load(tmp_path / "seeds.pt")
    # The official generate.py's images for these seeds, clamped, at two pixels; computed with
    # cd stylegan2-ada-pytorch && python -c "import legacy, numpy as np, torch; G = legacy.load_network_pkl(open(
    # 'sg2_32.pkl', 'rb'))['G_ema']; z = torch.from_numpy(np.random.RandomState(seed).randn(1, 64));
    # img = G(z, torch.zeros(1, 0), truncation_psi=0.7, noise_mode='const'); print(img[0, :, 0, 0], img[0, :, 17, 9])"
    official = {
        0: ([-0.295004, -0.497217, 0.329268], [-0.788794, -2.251537, 3.397091]),
        5: ([-0.481283, -0.281268, 0.382956], [-1.020244, -0.864483, 4.196501]),
    }
    for image, (corner, inner) in zip(images, official.values(), strict=True):
        assert torch.allclose(image[:, 0, 0], torch.tensor(corner), atol=1e-4)
        assert torch.allclose(image[:, 17, 9], torch.tensor(inner).clamp(-1, 1), atol=1e-4)


def test_convert_refuses_an_output_it_cannot_write_before_reading_the_snapshot(persistence, tmp_path, capsys):
    # An --out that is a folder ended in a traceback about a temporary file, after the whole snapshot was built.
    from gans.convert import main as convert_main

    path, _ = tiny_official_snapshot(persistence, tmp_path / "tiny.pkl")
    (tmp_path / "d.ckpt").mkdir()
    (tmp_path / "file").write_text("")
    for out, message in [(tmp_path / "d.ckpt", f"--out '{tmp_path / 'd.ckpt'}': expected a file"),
                         (tmp_path / "file" / "g.safetensors", f"'{tmp_path / 'file'}' is a file, not a folder")]:
        with pytest.raises(SystemExit) as exit_info:
            convert_main(["--pkl", str(path), "--out", str(out)])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.ckpt", "file", "tiny.pkl"]
    assert list((tmp_path / "d.ckpt").iterdir()) == []


def test_convert_refuses_raw_for_a_checkpoint_which_holds_both_generators(persistence, tmp_path, capsys):
    # --raw was silently ignored for a .ckpt (the README: "--raw: G" applies to the .safetensors of one generator).
    from gans.convert import main as convert_main

    path, _ = tiny_official_snapshot(persistence, tmp_path / "tiny.pkl")
    with pytest.raises(SystemExit) as exit_info:
        convert_main(["--pkl", str(path), "--out", str(tmp_path / "m.ckpt"), "--raw"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err == (f"error: --raw with --out '{tmp_path / 'm.ckpt'}': a .ckpt holds G, D and G_ema; --raw chooses G "
                   "for a .safetensors\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pkl"]


def test_sample_raw_is_refused_for_an_export_of_the_ema_generator_alone(persistence, tmp_path, capsys):
    # `gans.sample --raw` on an export of G_ema gave G_ema's images, where the README promises the trained generator.
    from gans.convert import main as convert_main
    from gans.sample import main as sample_main

    path, _ = tiny_official_snapshot(persistence, tmp_path / "tiny.pkl")
    convert_main(["--pkl", str(path), "--out", str(tmp_path / "ema.safetensors")])
    convert_main(["--pkl", str(path), "--out", str(tmp_path / "raw.safetensors"), "--raw"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        sample_main(["--ckpt", str(tmp_path / "ema.safetensors"), "--seeds", "0", "--raw", "--out",
                     str(tmp_path / "x.pt")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith(
        f"error: --raw with --ckpt '{tmp_path / 'ema.safetensors'}': the file holds only the EMA generator")
    assert not (tmp_path / "x.pt").exists()
    for name in ("raw", "ema"):  # an export of G samples G under --raw too; without --raw both sample what they hold
        sample_main(["--ckpt", str(tmp_path / f"{name}.safetensors"), "--seeds", "0", "--out", str(tmp_path / "a.pt")])
    sample_main(["--ckpt", str(tmp_path / "raw.safetensors"), "--seeds", "0", "--raw", "--out",
                 str(tmp_path / "b.pt")])
    sample_main(["--ckpt", str(path), "--seeds", "0", "--raw", "--out", str(tmp_path / "c.pt")])
    assert torch.equal(torch.load(tmp_path / "b.pt"), torch.load(tmp_path / "c.pt"))  # G, as the snapshot's --raw
