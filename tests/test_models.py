"""Shapes of every encoder and critic, and the blog encoder's parameter count against the Keras model."""

from __future__ import annotations

import pytest
import torch

from dim_lightning.errors import DIMError
from dim_lightning.mi.negatives import all_pairs, shuffled_pairs
from dim_lightning.models import views
from dim_lightning.models.critics import ConcatCritic, DotCritic
from dim_lightning.models.encoders import Alex64Encoder, BlogEncoder, DCGAN32Encoder
from dim_lightning.models.prior import KLPrior


def count_trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_seed_encoder_matches_keras_parameter_count() -> None:
    # Keras: conv and dense kernels + biases, BatchNormalization gamma + beta (moving stats not trainable).
    assert count_trainable(BlogEncoder(in_channels=3, image_size=64, z_dim=256)) == 1_702_144


@pytest.mark.parametrize(
    ("encoder", "size", "local_shape", "conv_shape"),
    [
        (BlogEncoder(in_channels=3, image_size=64, z_dim=64), 64, (64, 4, 4), (64, 4, 4)),
        (BlogEncoder(in_channels=1, image_size=32, z_dim=32), 32, (32, 2, 2), (32, 2, 2)),
        (DCGAN32Encoder(in_channels=3, image_size=32, z_dim=64), 32, (128, 8, 8), (256, 4, 4)),
        (DCGAN32Encoder(in_channels=1, image_size=64, z_dim=16, stochastic=True), 64, (128, 16, 16), (256, 8, 8)),
        (Alex64Encoder(in_channels=3, image_size=64, z_dim=64), 64, (384, 15, 15), (192, 7, 7)),
    ],
)
def test_encoder_output_shapes(encoder, size: int, local_shape: tuple, conv_shape: tuple) -> None:
    images = torch.randn(5, encoder.local_blocks[0][0].in_channels, size, size)
    out = encoder.train()(images)
    z_dim = out.Y.shape[1]
    assert out.code.shape == (5, z_dim)
    assert out.local.shape == (5, *local_shape)
    assert out.conv.shape == (5, *conv_shape)
    if out.log_var is not None:
        assert not torch.equal(out.code, out.Y)  # reparameterised sample while training
        assert torch.equal(encoder.eval()(images).code, encoder(images).Y)
        assert KLPrior()(out).ndim == 0


@pytest.mark.parametrize("critic_cls", [ConcatCritic, DotCritic])
@pytest.mark.parametrize("view", [views.local_features, views.flat_features, views.code_itself])
def test_critic_shapes_with_both_negative_strategies(critic_cls, view) -> None:
    out = BlogEncoder(in_channels=3, image_size=64, z_dim=32).train()(torch.randn(6, 3, 64, 64))
    features = view(out)
    critic = critic_cls(code_dim=32, feature_dim=features.shape[-1])
    a, b = critic.embed_code(out.code), critic.embed_features(features)
    m = features.shape[1]
    assert critic.score_all(a, b).shape == (6, 6, m)
    assert critic.score_aligned(a, b).shape == (6, m)
    every = all_pairs(critic, a, b)
    assert every.positive.shape == (6, m) and every.negative.shape == (6, 5 * m)
    shuffled = shuffled_pairs(critic, a, b)
    assert shuffled.positive.shape == (6, m) and shuffled.negative.shape == (6, m)
    # score_all's diagonal is the aligned score: both paths compute the same critic
    torch.testing.assert_close(critic.score_all(a, b).diagonal().T, critic.score_aligned(a, b))


@pytest.mark.parametrize(("kwargs", "match"), [({"z_dim": 100}, "divisible by 8"), ({"image_size": 40}, "by 16")])
def test_seed_encoder_rejects_impossible_sizes(kwargs, match: str) -> None:
    with pytest.raises(DIMError, match=match):
        BlogEncoder(**{"in_channels": 3, "image_size": 64, "z_dim": 64, **kwargs})


def test_adversarial_prior_discriminator_learns_to_spot_non_uniform_codes() -> None:
    from dim_lightning.models.encoders import EncoderOutput
    from dim_lightning.models.prior import AdversarialPrior

    torch.manual_seed(0)
    prior = AdversarialPrior(code_dim=4, hidden=(32, 16), lr=1e-2)
    code = torch.full((64, 4), 3.0)  # sigmoid(3) = 0.95 everywhere: far from Uniform[0, 1]
    out = EncoderOutput(
        code=code, Y=code, log_var=None, local=torch.zeros(64, 1, 1, 1), conv=torch.zeros(64, 1, 1, 1), fc=code
    )
    optimizer = torch.optim.Adam([prior.optimizer_group()])
    start = prior.discriminator_loss(out).item()
    for _ in range(200):
        optimizer.zero_grad()
        prior.discriminator_loss(out).backward()
        optimizer.step()
    assert prior.discriminator_loss(out).item() < 0.3 < start  # 2 log 2 = 1.39 is chance
    assert prior(out).item() > 2.0  # and the encoder is told its codes are easy to spot


def test_adversarial_sides_only_move_their_own_weights() -> None:
    from dim_lightning.models.encoders import EncoderOutput
    from dim_lightning.models.prior import AdversarialPrior

    prior = AdversarialPrior(code_dim=3, hidden=(8,))
    code = torch.randn(5, 3, requires_grad=True)
    out = EncoderOutput(
        code=code, Y=code, log_var=None, local=torch.zeros(5, 1, 1, 1), conv=torch.zeros(5, 1, 1, 1), fc=code
    )
    prior(out).backward()
    assert code.grad is not None and all(p.grad is None for p in prior.parameters())
    code.grad = None
    prior.discriminator_loss(out).backward()
    assert code.grad is None and all(p.grad is not None for p in prior.parameters())


def test_concat_critic_first_layer_is_initialised_as_one_keras_dense_layer() -> None:
    # Keras' Dense on concat[code, feature] draws Glorot-uniform weights over fan-in code_dim + feature_dim.
    torch.manual_seed(0)
    critic = ConcatCritic(code_dim=256, feature_dim=256, hidden=256)
    limit = (6.0 / (256 + 256 + 256)) ** 0.5
    for projection in (critic.code_proj, critic.feature_proj):
        weights = projection.weight.abs()
        assert weights.max() <= limit and weights.max() > 0.99 * limit


def test_dot_critic_scores_in_float32_under_bf16_autocast() -> None:
    # Raw dot products of 2048-unit embeddings reach the hundreds, where bf16 rounds in steps of 2 to 8.
    torch.manual_seed(0)
    critic = DotCritic(code_dim=64, feature_dim=128, units=2048, temperature=1.0).eval()
    a, b = critic.embed_code(torch.randn(4, 64)), critic.embed_features(torch.randn(4, 9, 128))
    reference = critic.score_all(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = critic.score_all(a, b)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, reference)


def test_concat_logits_and_kl_prior_are_float32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    critic = ConcatCritic(code_dim=8, feature_dim=4, hidden=16, layers=2)
    a, b = torch.randn(5, 8) * 4, torch.randn(5, 3, 4) * 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ea, eb = critic.embed_code(a), critic.embed_features(b)
        scores = critic.score_all(ea, eb)
        hidden = critic.head[:-1](ea[:, None, None, :] + eb[None])  # bf16 under autocast
        aligned = critic.score_aligned(ea, eb)
    assert hidden.dtype == torch.bfloat16 and scores.dtype == aligned.dtype == torch.float32
    last = critic.head[-1]
    expected = (hidden.float() @ last.weight.T + last.bias).squeeze(-1)  # the logit layer in float32
    torch.testing.assert_close(scores, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(aligned, torch.diagonal(scores, dim1=0, dim2=1).T, rtol=1e-6, atol=1e-6)

    mean, log_var = torch.randn(64, 256) * 3, torch.randn(64, 256)
    out = views.EncoderOutput(code=mean, Y=mean, log_var=log_var, local=None, conv=None, fc=None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        prior = KLPrior()(views.EncoderOutput(mean.bfloat16(), mean.bfloat16(), log_var.bfloat16(), None, None, None))
    assert prior.dtype == torch.float32
    reference = KLPrior()(views.EncoderOutput(*(t.bfloat16().float() for t in (mean, mean, log_var)), None, None, None))
    torch.testing.assert_close(prior, reference, rtol=1e-6, atol=1e-6)
    assert KLPrior()(out).dtype == torch.float32
