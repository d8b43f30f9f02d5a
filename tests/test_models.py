"""Registry: every model builds by name, maps 48x48 grayscale to class logits, and has the seed's size."""

import pytest
import torch

from emoji_mirror.models import count_params, create_model, list_models

# Seed parameter counts; ours must be within +-25%.
SEED_PARAMS = {"baseline_cnn": 0.4e6, "attention_cnn": 1.2e6, "vit_tiny": 5.5e6}


def test_registry_lists_seed_and_stronger_models():
    assert set(SEED_PARAMS) | {"resnet18_fer", "resnet_fer_small"} <= set(list_models())


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("num_classes", [7, 8])
def test_forward_shape(name, num_classes):
    model = create_model(name, num_classes=num_classes).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, 48, 48))
    assert out.shape == (3, num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "seed_count"), SEED_PARAMS.items())
def test_param_counts_match_seed(name, seed_count):
    assert abs(count_params(create_model(name)) - seed_count) <= 0.25 * seed_count


def test_unknown_model_names_the_registered_ones():
    with pytest.raises(ValueError, match="baseline_cnn"):
        create_model("resnet9000")


def test_attention_cnn_exposes_spatial_maps():
    model = create_model("attention_cnn").eval()
    with torch.no_grad():
        model(torch.randn(2, 1, 48, 48))
    maps = model.spatial_maps()
    assert len(maps) == 3 and maps[0].shape == (2, 1, 24, 24)
    assert all(((m >= 0) & (m <= 1)).all() for m in maps)


def test_vit_loads_pretrained_weights_from_a_local_file(tmp_path):
    """The online path (timm ImageNet weights) exercised offline with a file we make: an RGB 224px ViT-Tiny."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=1000)
    weights = tmp_path / "vit_tiny_imagenet.safetensors"
    save_file(source.state_dict(), str(weights))
    model = create_model("vit_tiny", pretrained_file=str(weights))
    # Transformer blocks are copied as they are; the RGB patch filters are summed to one channel and resampled.
    torch.testing.assert_close(model.blocks[5].mlp.fc1.weight, source.blocks[5].mlp.fc1.weight)
    assert model.patch_embed.proj.weight.shape == (192, 1, 8, 8)
    assert model.pos_embed.shape == (1, 1 + 36, 192)
    assert model.head.weight.shape == (7, 192)


def test_vit_conv_stem_keeps_the_token_grid_and_round_trips_through_a_checkpoint(tmp_path):
    """stem="conv": timm's ConvStem of stride-2 3x3 convolutions embeds the face into the patch stem's token grid."""
    from conftest import make_checkpoint
    from emoji_mirror.checkpoint import load_model

    small = {"depth": 2, "num_heads": 2, "embed_dim": 32}
    for patch_size, tokens in ((8, 36), (4, 144)):
        model = create_model("vit_tiny", stem="conv", patch_size=patch_size, **small)
        assert model.patch_embed.num_patches == tokens == create_model("vit_tiny", patch_size=patch_size, **small).patch_embed.num_patches
        assert any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) and m.stride == (2, 2) for m in model.patch_embed.modules())
    path = make_checkpoint(tmp_path / "vit_conv.pt", "vit_tiny", arch_kwargs={"stem": "conv", **small})
    torch.manual_seed(0)
    model = create_model("vit_tiny", stem="conv", **small).eval()
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(load_model(path).model(x), model(x))


@pytest.mark.parametrize("kwargs, message", [({"stem": "conv", "patch_size": 6}, "power-of-two patch size"),
                                             ({"stem": "conv", "pretrained": True}, "patch stem only"),
                                             ({"stem": "hybrid"}, "unknown ViT stem")])
def test_vit_conv_stem_refuses_what_it_cannot_build(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_model("vit_tiny", **kwargs)
