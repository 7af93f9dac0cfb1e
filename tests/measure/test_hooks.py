import pytest
import torch
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from evidence.errors import MeasurementError
from evidence.measure import hooks
from evidence.measure.hooks import capture, scoped_hooks


@pytest.fixture(scope="module")
def bridge() -> TransformerBridge:
    config = TransformerBridgeConfig(
        d_model=16,
        d_head=8,
        n_heads=2,
        n_layers=2,
        n_ctx=16,
        d_vocab=20,
        attn_only=True,
        normalization_type="LN",
        seed=3,
        device="cpu",
    )
    model = TransformerBridge.boot_native(config)
    model.eval()
    return model


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, 20, (3, 10), generator=torch.Generator().manual_seed(0))


def attached(bridge: TransformerBridge) -> int:
    return sum(len(p.fwd_hooks) + len(p.bwd_hooks) for p in bridge.hook_points())


def zero(activation: torch.Tensor, hook: object) -> torch.Tensor:
    return torch.zeros_like(activation)


def test_public_api_is_pinned():
    assert hooks.__all__ == [
        "ActivationBuffer",
        "HookFn",
        "capture",
        "capture_at",
        "decoding_at",
        "incremental",
        "keep_graph",
        "position_offset",
        "prompt_width",
        "prompts_of_width",
        "record",
        "scoped_hooks",
        "whole_sequence",
    ]


def test_keep_graph_gives_gradients_at_the_kept_points_and_record_changes_nothing(bridge, tokens):
    kept: dict[str, torch.Tensor] = {}
    seen: dict[str, torch.Tensor] = {}
    points = ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"]
    with torch.no_grad():
        want = bridge(tokens)
    wrap = [(name, hooks.keep_graph(name, kept)) for name in points]
    wrap.append(("blocks.1.hook_resid_pre", hooks.record("resid", seen)))
    with torch.enable_grad(), scoped_hooks(bridge, wrap):
        logits = bridge(tokens)
    assert torch.allclose(logits, want)  # neither kind of hook changes the computation
    assert not seen["resid"].requires_grad
    first, second = torch.autograd.grad(logits[:, -1].sum(), [kept[p] for p in points])
    assert first.abs().sum() > 0 and second.abs().sum() > 0


def test_keep_graph_starts_a_graph_where_nothing_upstream_needs_a_gradient():
    kept: dict[str, torch.Tensor] = {}
    hook = hooks.keep_graph("x", kept)
    plain = torch.ones(2, 3)
    out = hook(plain, None)
    assert out is kept["x"] and out.requires_grad and out.is_leaf
    assert not plain.requires_grad  # the caller's tensor is left alone


def test_counts_every_call_and_detaches_on_exit(bridge, tokens):
    seen = []
    spy = [
        ("blocks.0.attn.hook_pattern", lambda a, hook: seen.append(tuple(a.shape))),
        ("blocks.1.hook_resid_pre", lambda a, hook: None),
    ]
    with torch.no_grad(), scoped_hooks(bridge, spy) as counts:
        bridge(tokens)
        assert counts == {"blocks.0.attn.hook_pattern": 0, "blocks.1.hook_resid_pre": 0}  # filled on exit
        bridge(tokens[:1])
    assert counts == {"blocks.0.attn.hook_pattern": 2, "blocks.1.hook_resid_pre": 2}
    assert seen == [(3, 2, 10, 10), (1, 2, 10, 10)]
    assert attached(bridge) == 0


def test_the_same_point_twice_is_counted_per_name(bridge, tokens):
    fns = [("blocks.0.hook_resid_pre", lambda a, hook: None)] * 2
    with torch.no_grad(), scoped_hooks(bridge, fns) as counts:
        bridge(tokens)
    assert counts == {"blocks.0.hook_resid_pre": 2}


def test_an_edit_changes_the_output_and_is_gone_afterwards(bridge, tokens):
    with torch.no_grad():
        clean = bridge(tokens)
        with scoped_hooks(bridge, [("blocks.0.attn.hook_z", zero)]):
            edited = bridge(tokens)
        again = bridge(tokens)
    assert not torch.allclose(clean, edited)
    assert torch.equal(clean, again)


def test_hook_z_carries_heads(bridge, tokens):
    shapes = []
    with torch.no_grad(), scoped_hooks(bridge, [("blocks.1.attn.hook_z", lambda a, hook: shapes.append(a.shape))]):
        bridge(tokens)
    assert shapes == [torch.Size([3, 10, 2, 8])]


def test_a_nonexistent_hook_point_is_refused_before_running(bridge):
    with pytest.raises(MeasurementError, match="blocks.7.attn.hook_z"):
        with scoped_hooks(bridge, [("blocks.0.hook_resid_pre", zero), ("blocks.7.attn.hook_z", zero)]):
            pytest.fail("the block must not run")
    assert attached(bridge) == 0


def test_a_disabled_hook_point_is_refused(bridge):
    with pytest.raises(MeasurementError, match="hook_result"):
        with scoped_hooks(bridge, [("blocks.0.attn.hook_result", zero)]):
            pass
    assert attached(bridge) == 0


def test_a_hook_that_never_fires_is_an_error(bridge, tokens):
    with pytest.raises(MeasurementError, match=r"blocks\.1\.attn\.hook_z.*never ran"):
        with torch.no_grad(), scoped_hooks(bridge, [("blocks.0.attn.hook_z", zero), ("blocks.1.attn.hook_z", zero)]):
            bridge(tokens, stop_at_layer=1)
    assert attached(bridge) == 0


def test_no_forward_pass_means_no_hook_fired(bridge):
    with pytest.raises(MeasurementError, match="never ran"):
        with scoped_hooks(bridge, [("hook_embed", zero)]):
            pass


def test_hooks_are_removed_after_an_exception_which_propagates(bridge, tokens):
    with pytest.raises(RuntimeError, match="boom"):
        with torch.no_grad(), scoped_hooks(bridge, [("blocks.0.attn.hook_z", zero)]):
            raise RuntimeError("boom")
    assert attached(bridge) == 0
    with torch.no_grad():
        with scoped_hooks(bridge, [("blocks.0.attn.hook_z", zero)]):
            edited = bridge(tokens)
        assert not torch.equal(bridge(tokens), edited)


def test_an_exception_inside_a_hook_propagates_and_cleans_up(bridge, tokens):
    def broken(activation, hook):
        raise ValueError("bad hook")

    with pytest.raises(ValueError, match="bad hook"):
        with torch.no_grad(), scoped_hooks(bridge, [("blocks.1.hook_resid_pre", broken)]):
            bridge(tokens)
    assert attached(bridge) == 0


def test_capture_returns_detached_attention_patterns(bridge, tokens):
    names = ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    acts = capture(bridge, names, tokens)
    assert sorted(acts) == names
    for pattern in acts.values():
        assert pattern.shape == (3, 2, 10, 10)
        assert not pattern.requires_grad
        assert torch.allclose(pattern.sum(-1), torch.ones(3, 2, 10))
        assert torch.all(pattern.triu(diagonal=1) == 0)  # causal
    assert attached(bridge) == 0


def test_capture_of_an_unreached_point_is_an_error(bridge, tokens):
    with pytest.raises(MeasurementError):
        capture(bridge, ["blocks.9.attn.hook_pattern"], tokens)
