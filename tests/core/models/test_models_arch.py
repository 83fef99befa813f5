"""Architectures, preprocess callables, the training loop and save/load (fast: no zoo training)."""

import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from torch import nn
from visloupe.core import models
from visloupe.core.models import (
    GlobalLSEPool,
    ImagePreprocess,
    SmallResNet,
    TextCNN,
    TextPreprocess,
    TinyViT,
    TrainConfig,
    build_model,
    load_model,
    save_model,
    train_classifier,
)

# ------------------------------------------------------------------------------ SmallResNet


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_padding_mode_reaches_every_3x3_conv(mode):
    model = SmallResNet(padding_mode=mode)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 5  # stem + 2 per block
    assert all(c.padding_mode == mode for c in convs)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_padding_mode_changes_outputs_only_through_the_border():
    x = torch.rand(2, 3, 32, 32)
    a = build_model("SmallResNet", {"padding_mode": "zeros", "pooling": "max"}, seed=1).eval()
    b = build_model("SmallResNet", {"padding_mode": "circular", "pooling": "max"}, seed=1).eval()
    assert torch.equal(a.state_dict()["head.weight"], b.state_dict()["head.weight"])
    assert not torch.allclose(a(x), b(x))


def test_stride2_convs_leave_uneven_padding_at_32_and_even_at_33():
    """Each stride-2 3x3/p1 conv drops (n - 1) mod 2 padded rows (Mind the Pad)."""
    model = SmallResNet(widths=(8, 16, 32, 64)).eval()
    sizes = {}
    for n in (32, 33):
        seen = []
        strided = [m for m in model.modules()
                   if isinstance(m, nn.Conv2d) and m.stride == (2, 2) and m.kernel_size == (3, 3)]
        hooks = [m.register_forward_hook(
            lambda mod, inp, out, seen=seen: seen.append(inp[0].shape[-1])) for m in strided]
        try:
            model(torch.zeros(1, 3, n, n))
        finally:
            for h in hooks:
                h.remove()
        sizes[n] = seen
    assert sizes[32] == [32, 16, 8] and all((s - 1) % 2 == 1 for s in sizes[32])
    assert sizes[33] == [33, 17, 9] and all((s - 1) % 2 == 0 for s in sizes[33])


def test_softplus_replaces_every_relu():
    model = SmallResNet(activation="softplus", softplus_beta=5.0)
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    softplus = [m for m in model.modules() if isinstance(m, nn.Softplus)]
    assert len(softplus) == 5 and all(m.beta == 5.0 for m in softplus)
    assert any(isinstance(m, nn.ReLU) for m in SmallResNet().modules())


@pytest.mark.parametrize("pooling,kind", [("avg", nn.AdaptiveAvgPool2d),
                                          ("max", nn.AdaptiveMaxPool2d), ("lse", GlobalLSEPool)])
def test_pooling_option_picks_the_pool(pooling, kind):
    model = SmallResNet(pooling=pooling, lse_temperature=3.0)
    assert any(isinstance(m, kind) for m in model.pool.modules())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_lse_pool_interpolates_between_mean_and_max():
    x = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean, peak = x.mean(dim=(2, 3)), x.amax(dim=(2, 3))
    torch.testing.assert_close(GlobalLSEPool(1e-4)(x), mean, atol=1e-3, rtol=0)
    hot = GlobalLSEPool(1e3)(x)
    assert torch.all(hot <= peak + 1e-6) and torch.all(peak - hot <= math.log(25) / 1e3 + 1e-5)
    mid = GlobalLSEPool(1.0)(x)
    assert torch.all((mid > mean) & (mid < peak))


def test_target_layer_names_the_last_block():
    model = SmallResNet(widths=(8, 16, 32))
    assert dict(model.named_modules())[model.target_layer] is model.features[-1]


def test_bad_options_raise_value_errors_naming_the_argument():
    for kwargs, word in [({"padding_mode": "symmetric"}, "padding_mode"),
                         ({"activation": "gelu"}, "activation"),
                         ({"pooling": "median"}, "pooling"), ({"widths": ()}, "widths")]:
        with pytest.raises(ValueError, match=word):
            SmallResNet(**kwargs)
    with pytest.raises(ValueError, match="image_size"):
        TinyViT(image_size=30, patch_size=4)
    with pytest.raises(ValueError, match="architecture"):
        build_model("ResNet50", {})


def test_digits_cnn_family_takes_one_channel():
    model = SmallResNet(in_channels=1, num_classes=10)
    assert model(torch.randn(4, 1, 32, 32)).shape == (4, 10)


# ------------------------------------------------------------------------------ TinyViT


def test_vit_has_timm_style_names_and_runs_at_other_sizes():
    model = TinyViT(image_size=48, patch_size=4, dim=32, depth=2, num_heads=2).eval()
    assert model.pos_embed.shape == (1, 12 * 12 + 1, 32)
    block = model.blocks[-1]
    for name in ("norm1", "attn", "norm2", "mlp"):
        assert hasattr(block, name)
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, 5)
    with pytest.raises(ValueError, match="x"):
        model(torch.randn(2, 3, 32, 32))


def test_vit_attention_probabilities_are_hookable():
    model = TinyViT(image_size=16, dim=32, depth=2, num_heads=4).eval()
    seen = []
    handle = model.blocks[0].attn.attn_drop.register_forward_hook(
        lambda mod, inp, out: seen.append(out))
    try:
        model(torch.randn(3, 3, 16, 16))
    finally:
        handle.remove()
    (probs,) = seen
    assert probs.shape == (3, 4, 17, 17)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 4, 17))


def test_vit_cls_token_decides_the_output():
    """Changing one patch changes the logits (the CLS token attends to all patches)."""
    model = build_model("TinyViT", {"image_size": 16, "dim": 32, "depth": 2}, seed=0).eval()
    x = torch.randn(1, 3, 16, 16)
    y = x.clone()
    y[..., 12:, 12:] += 1.0
    assert not torch.allclose(model(x), model(y))


# ------------------------------------------------------------------------------ TextCNN


def test_textcnn_padding_embedding_gets_no_gradient():
    model = build_model("TextCNN", {"vocab_size": 50, "dropout": 0.0}, seed=0)
    tokens = torch.tensor([[5, 6, 7, 8, 9, 0, 0, 0], [3, 4, 0, 0, 0, 0, 0, 0]])
    model(tokens)[:, 1].sum().backward()
    grad = model.embedding.weight.grad
    assert torch.count_nonzero(model.embedding.weight[0]) == 0
    assert torch.count_nonzero(grad[0]) == 0
    assert torch.count_nonzero(grad[5]) > 0
    assert model.embedding is dict(model.named_modules())[model.target_layer]


def test_textcnn_short_inputs_and_embedding_path_agree():
    model = build_model("TextCNN", {"vocab_size": 30}, seed=0).eval()
    short = torch.tensor([[4, 7]])
    padded = torch.tensor([[4, 7, 0, 0, 0]])
    torch.testing.assert_close(model(short), model(padded))
    torch.testing.assert_close(model.forward_embeddings(model.embedding(padded)), model(padded))
    with pytest.raises(ValueError, match="token_ids"):
        model(torch.randn(2, 5))


def test_textcnn_softplus_and_lse_options():
    model = TextCNN(vocab_size=20, activation="softplus", pooling="lse")
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert isinstance(model.pool, GlobalLSEPool)
    assert model(torch.randint(0, 20, (2, 9))).shape == (2, 2)


# ------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("arch,config", [
    ("SmallResNet", {"widths": [8, 16]}),
    ("TinyViT", {"image_size": 16, "dim": 32, "depth": 1}),
    ("TextCNN", {"vocab_size": 40}),
])
def test_build_model_seed_fixes_weights_and_spares_global_rng(arch, config):
    state = torch.get_rng_state()
    a, b, c = (build_model(arch, config, seed=s).state_dict() for s in (3, 3, 4))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def _tiny_run(seed, snapshot_epochs=(1,)):
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(1, 30, (64, 10), generator=gen)
    y = (x[:, 0] > 15).long()
    model = build_model("TextCNN", {"vocab_size": 30, "dropout": 0.5, "num_filters": 8}, seed=0)
    config = TrainConfig(epochs=3, batch_size=16, lr=1e-2)
    result = train_classifier(model, x, y, x, y, config, seed=seed,
                              snapshot_epochs=snapshot_epochs)
    return model, result


def test_training_is_deterministic_for_a_seed_and_spares_global_rng():
    state = torch.get_rng_state()
    m1, r1 = _tiny_run(seed=5)
    m2, _ = _tiny_run(seed=5)
    m3, _ = _tiny_run(seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert any(not torch.equal(s1[k], s3[k]) for k in s1)
    assert list(r1.snapshots) == ["random", "epoch1", "final"]
    assert len(r1.history) == 3 and not m1.training


def test_training_learns_and_reports_progress():
    calls = []
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(256, 1, 8, 8, generator=gen)
    x[:, :, 2:6, 2:6] += 1.5 * (torch.arange(256) % 2).view(-1, 1, 1, 1)  # planted bright square
    y = torch.arange(256) % 2
    model = build_model("SmallResNet", {"in_channels": 1, "num_classes": 2, "widths": [8, 8]},
                        seed=0)
    result = train_classifier(model, x, y, x, y, TrainConfig(epochs=4, batch_size=32, lr=1e-2),
                              progress=lambda e, t, m: calls.append((e, t, sorted(m))))
    assert [c[:2] for c in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert calls[0][2] == ["loss", "seconds", "test_accuracy", "train_accuracy"]
    assert result.test_accuracy > 0.85
    assert result.history[-1]["loss"] < result.history[0]["loss"]


# ------------------------------------------------------------------------------ save / load


def test_save_load_round_trip_without_pickle(tmp_path):
    model = build_model("TinyViT", {"image_size": 16, "dim": 32, "depth": 1}, seed=2).eval()
    path = save_model(model, tmp_path / "vit.safetensors", {"note": "hello"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vit.json", "vit.safetensors"]
    with safe_open(str(path), framework="pt") as f:
        assert "pos_embed" in set(f.keys())
    loaded, meta = load_model(path)
    assert isinstance(loaded, TinyViT) and not loaded.training
    assert meta["note"] == "hello" and meta["architecture"] == "TinyViT"
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_load_into_a_given_model_leaves_it_untouched(tmp_path):
    source = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    save_model(source, tmp_path / "seq.safetensors")
    other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    before = [p.clone() for p in other.parameters()]
    loaded, _ = load_model(tmp_path / "seq.safetensors", model=other)
    assert all(torch.equal(a, b) for a, b in zip(before, other.parameters(), strict=True))
    assert torch.equal(loaded[0].weight, source[0].weight)
    with pytest.raises(ValueError, match="architecture"):
        load_model(tmp_path / "seq.safetensors")


def test_corrupt_or_mismatched_files_raise_value_errors(tmp_path):
    model = SmallResNet(widths=(8, 16))
    path = save_model(model, tmp_path / "cnn.safetensors")
    with pytest.raises(ValueError, match="do not fit"):
        load_model(path, model=SmallResNet(widths=(8, 32)))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="cannot read"):
        load_model(path)
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        load_model(path)
    with pytest.raises(ValueError, match="safetensors"):
        save_model(model, tmp_path / "cnn.pt")
    with pytest.raises(TypeError, match="model"):
        save_model("not a model", tmp_path / "x.safetensors")


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    model = SmallResNet(widths=(8, 16))
    path = save_model(model, tmp_path / "cnn.safetensors")
    original = path.read_bytes()

    def broken(state, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(models.io, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_model(SmallResNet(widths=(8, 16)), path)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.json", "cnn.safetensors"]


# ------------------------------------------------------------------------------ preprocess


def _checker(size=40):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_image_preprocess_converts_modes_and_sizes():
    pre = ImagePreprocess(32, "RGB", [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    array = _checker()
    rgb = Image.fromarray(array)
    for image in (rgb, rgb.convert("RGBA"), rgb.convert("L"), rgb.convert("P"), array):
        out = pre(image)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    gray = ImagePreprocess((32, 24), "L", 0.5, 0.5)
    assert gray(rgb).shape == (1, 32, 24)
    assert gray.batch([rgb, rgb]).shape == (2, 1, 32, 24)
    with pytest.raises(TypeError, match="image"):
        pre(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="mode"):
        ImagePreprocess(32, "CMYK")


def test_image_preprocess_denormalize_inverts_normalisation():
    pre = ImagePreprocess(40, "RGB", [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    array = _checker()
    back = pre.denormalize(pre(Image.fromarray(array)))
    expected = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(back, expected, atol=1e-5, rtol=0)
    assert pre.denormalize(back[None]).shape == (1, 3, 40, 40)


def test_preprocess_pickles_and_round_trips_through_json():
    pre = ImagePreprocess(32, "L", 0.1, 0.3)
    assert pickle.loads(pickle.dumps(pre)) == pre
    assert ImagePreprocess.from_dict(pre.to_dict()) == pre
    assert (pre.size, pre.mode, pre.mean, pre.std) == ((32, 32), "L", (0.1,), (0.3,))


def test_text_preprocess_maps_strings_to_token_ids():
    from visloupe.core import data

    tokenizer = data.text_tokenizer()
    pre = TextPreprocess(tokenizer, max_len=12)
    one = pre("the movie was great .")
    assert one.shape == (12,) and one.dtype == torch.long
    assert int(one[0]) != 0 and torch.all(one[5:] == tokenizer.pad_id)
    batch = pre(["the movie was great .", "i hated the plot ."])
    assert batch.shape == (2, 12) and torch.equal(batch[0], one)
    assert pickle.loads(pickle.dumps(pre))("the movie").tolist() == pre("the movie").tolist()


def test_vit_sincos_positions_are_fixed_and_distinct():
    vit = models.TinyViT(image_size=16, patch_size=4, dim=32, depth=1, num_heads=2, num_classes=3,
                         pos_embed="sincos")
    assert "pos_embed" not in dict(vit.named_parameters())  # a buffer: never trained
    pos = vit.pos_embed[0]
    assert torch.equal(pos[0], torch.zeros(32))  # CLS carries no position
    patches = pos[1:]
    assert torch.cdist(patches, patches).add(torch.eye(len(patches))).min() > 1e-3


def test_vit_cls_plus_mean_head_sees_every_patch_token():
    vit = models.TinyViT(image_size=16, patch_size=4, dim=32, depth=1, num_heads=2, num_classes=3,
                         pool="cls+mean").eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    tokens = {}
    handle = vit.norm.register_forward_hook(lambda m, i, o: tokens.setdefault("out", o))
    try:
        logits = vit(x)
    finally:
        handle.remove()
    out = tokens["out"]
    expected = vit.head((out[:, 0] + out[:, 1:].mean(dim=1)) / 2)
    assert torch.allclose(logits, expected, atol=1e-5)
    with pytest.raises(ValueError, match="pool"):
        models.TinyViT(image_size=16, patch_size=4, pool="max")
