"""Tests for drivesim.wfm.attention: every backend computes the same attention, the choice of backend
follows the call, set_backend and DRIVESIM_ATTENTION, and a backend that cannot run is named, never swapped."""

import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from drivesim.errors import ConfigError
from drivesim.wfm.attention import BACKENDS, ENV_VAR, attend, backend_problem, resolve, set_backend

FAST = settings(max_examples=30, deadline=None)
TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 1e-2, torch.float16: 1e-2}

# (backend, device, dtype) combinations a backend claims; math on the same device is the reference.
FAST_PATHS = [
    ("sdpa", "cpu", torch.float32), ("sdpa", "cpu", torch.bfloat16),
    ("sdpa", "cuda", torch.float32), ("sdpa", "cuda", torch.bfloat16), ("sdpa", "cuda", torch.float16),
    ("flash-attn", "cuda", torch.bfloat16), ("flash-attn", "cuda", torch.float16),
]
MASKED_PATHS = [case for case in FAST_PATHS if case[0] == "sdpa"]  # flash-attn takes no mask


def case_id(case) -> str:
    backend, device, dtype = case
    return f"{backend}-{device}-{str(dtype).removeprefix('torch.')}"


@pytest.fixture(autouse=True)
def no_process_default(monkeypatch):
    """Each test starts from the plain default: no set_backend, no DRIVESIM_ATTENTION."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    set_backend(None)
    yield
    set_backend(None)


def require(backend: str, device: str, dtype: torch.dtype) -> None:
    """Skip, saying why, when `backend` cannot run on `device` in `dtype` here."""
    problem = backend_problem(backend)
    if problem is not None:
        pytest.skip(problem)
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    problem = backend_problem(backend, torch.zeros(1, 1, 1, 8, device=device, dtype=dtype))
    if problem is not None:
        pytest.skip(problem)


def qkv(batch, heads, queries, keys, head_dim, seed, device="cpu", dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    shapes = [(batch, heads, queries, head_dim), (batch, heads, keys, head_dim), (batch, heads, keys, head_dim)]
    return [torch.randn(shape, generator=generator).to(device, dtype) for shape in shapes]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.double()
    return ((actual.double() - expected).norm() / expected.norm().clamp_min(1e-30)).item()


shapes = dict(batch=st.integers(1, 2), heads=st.integers(1, 3), queries=st.integers(1, 40),
              keys=st.integers(1, 40), head_dim=st.integers(1, 64), seed=st.integers(0, 2**16))


@pytest.mark.parametrize("case", FAST_PATHS, ids=case_id)
def test_backend_matches_math(case):
    backend, device, dtype = case
    require(backend, device, dtype)

    @FAST
    @given(**shapes)
    @example(batch=1, heads=2, queries=17, keys=33, head_dim=40, seed=0)  # odd lengths, cross-attention
    @example(batch=2, heads=1, queries=1, keys=1, head_dim=128, seed=1)  # one key: all weight on it
    def check(batch, heads, queries, keys, head_dim, seed):
        q, k, v = qkv(batch, heads, queries, keys, head_dim, seed, device, dtype)
        out = attend(q, k, v, backend=backend)
        assert out.shape == q.shape and out.dtype == dtype
        assert relative_error(out, attend(q, k, v, backend="math")) <= TOLERANCE[dtype]

    check()


@pytest.mark.parametrize("case", MASKED_PATHS, ids=case_id)
def test_masked_backend_matches_math(case):
    backend, device, dtype = case
    require(backend, device, dtype)

    @FAST
    @given(**shapes, per_query=st.booleans())
    @example(batch=1, heads=3, queries=9, keys=21, head_dim=16, seed=2, per_query=True)
    def check(batch, heads, queries, keys, head_dim, seed, per_query):
        q, k, v = qkv(batch, heads, queries, keys, head_dim, seed, device, dtype)
        generator = torch.Generator().manual_seed(seed + 1)
        mask = torch.rand(batch, 1, queries if per_query else 1, keys, generator=generator) < 0.6
        mask[..., 0] = True  # every query sees at least one key
        mask = mask.to(device)
        expected = attend(q, k, v, mask=mask, backend="math")
        assert relative_error(attend(q, k, v, mask=mask, backend=backend), expected) <= TOLERANCE[dtype]

    check()


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_masked_keys_have_no_influence(backend):
    q, k, v = qkv(2, 2, 5, 7, 8, seed=3)
    mask = torch.tensor([True, False, True, True, False, False, True])
    changed = v.clone()
    changed[:, :, ~mask] = 100.0
    torch.testing.assert_close(attend(q, k, changed, mask=mask, backend=backend),
                               attend(q, k, v, mask=mask, backend=backend))
    with pytest.raises(AssertionError):  # without the mask they do
        torch.testing.assert_close(attend(q, k, changed, backend=backend), attend(q, k, v, backend=backend))


@pytest.mark.parametrize("backend", ["flash-attn", "sdpa", "math"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_softmax_scale_is_one_over_square_root_of_head_dim(backend, device):
    dtype = torch.bfloat16 if backend == "flash-attn" else torch.float32
    require(backend, device, dtype)
    # Head dim 4: the query meets the first key with logit 2 * 1 / sqrt(4) = 1 and the second with 0.
    q = torch.tensor([2.0, 0, 0, 0]).reshape(1, 1, 1, 4)
    k = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]]).reshape(1, 1, 2, 4)
    v = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0]]).reshape(1, 1, 2, 4)
    first = math.e / (1 + math.e)
    out = attend(*(x.to(device, dtype) for x in (q, k, v)), backend=backend)
    expected = torch.tensor([first, 1 - first, 0, 0]).reshape(1, 1, 1, 4)
    torch.testing.assert_close(out.float().cpu(), expected, atol=TOLERANCE[dtype], rtol=0)


def test_math_keeps_float16_logits_beyond_float16_range():
    # q·k = 300 * 300 * 64 = 5.8e6 overflows float16 (max 65504); accumulated in float32 it does not.
    q, k, v = qkv(1, 2, 6, 9, 64, seed=4)
    q, k = q.abs() * 300, k.abs() * 300
    out = attend(q.half(), k.half(), v.half(), backend="math")
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    q, k, v = (x.half().double() for x in (q, k, v))
    expected = torch.softmax(q @ k.transpose(-2, -1) / 8, dim=-1) @ v
    assert relative_error(out, expected) <= 1e-2


GRADIENT_PATHS = [("sdpa", "cpu", torch.float32), ("sdpa", "cpu", torch.bfloat16),
                  ("sdpa", "cuda", torch.bfloat16), ("flash-attn", "cuda", torch.bfloat16)]


@pytest.mark.parametrize("case", GRADIENT_PATHS, ids=case_id)
def test_gradients_match_math(case):
    backend, device, dtype = case
    require(backend, device, dtype)

    # With one key the query and key gradients are exactly zero and only rounding is left to compare. In half
    # precision a query's gradient over a few short keys is a difference of nearly equal terms, which each
    # backend rounds its own way: there the comparison starts at four keys and head dim 8.
    few = 2 if dtype == torch.float32 else 4
    small = 1 if dtype == torch.float32 else 8

    @settings(max_examples=20, deadline=None)
    @given(batch=st.integers(1, 2), heads=st.integers(1, 2), queries=st.integers(1, 24),
           keys=st.integers(few, 24), head_dim=st.integers(small, 48), seed=st.integers(0, 2**16))
    @example(batch=1, heads=2, queries=13, keys=7, head_dim=24, seed=5)
    def check(batch, heads, queries, keys, head_dim, seed):
        inputs = qkv(batch, heads, queries, keys, head_dim, seed, device, dtype)
        upstream = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(seed + 1)).to(device, dtype)
        gradients = {}
        for name in (backend, "math"):
            leaves = [x.clone().requires_grad_() for x in inputs]
            attend(*leaves, backend=name).backward(upstream)
            gradients[name] = [x.grad for x in leaves]
        for actual, expected in zip(gradients[backend], gradients["math"]):
            assert relative_error(actual, expected) <= TOLERANCE[dtype]

    check()


def test_auto_picks_flash_attn_or_sdpa_and_never_math():
    q = torch.zeros(1, 1, 4, 8)
    assert resolve(None, q) == resolve("auto", q) == "sdpa"  # flash-attn takes no CPU tensors
    assert resolve("auto", q.double()) == "sdpa"
    assert attend(q, q, q).shape == q.shape
    if torch.cuda.is_available():
        bf16 = q.to("cuda", torch.bfloat16)
        assert resolve("auto", bf16, mask=torch.ones(4, 4, dtype=torch.bool, device="cuda")) == "sdpa"
        assert resolve("auto", bf16) == ("flash-attn" if backend_problem("flash-attn", bf16) is None else "sdpa")


def test_flash_attn_on_cuda_is_chosen_by_auto_for_half_precision():
    require("flash-attn", "cuda", torch.bfloat16)
    assert resolve("auto", torch.zeros(1, 1, 4, 64, device="cuda", dtype=torch.bfloat16)) == "flash-attn"
    assert resolve("auto", torch.zeros(1, 1, 4, 64, device="cuda")) == "sdpa"  # float32


def test_flash_attn_asked_for_on_cpu_is_a_config_error_saying_why():
    q, k, v = qkv(1, 1, 3, 3, 8, seed=6)
    with pytest.raises(ConfigError, match="flash-attn.*CUDA tensors only") as raised:
        attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), backend="flash-attn")
    assert backend_problem("flash-attn", q) in str(raised.value)


def test_flash_attn_asked_for_in_float32_on_cuda_is_a_config_error():
    require("flash-attn", "cuda", torch.bfloat16)
    q = torch.zeros(1, 1, 3, 8, device="cuda")
    with pytest.raises(ConfigError, match="float16 or bfloat16"):
        attend(q, q, q, backend="flash-attn")


def test_flash_attn_with_a_mask_is_a_config_error():
    q = torch.zeros(1, 1, 3, 8)
    with pytest.raises(ConfigError, match="flash-attn"):
        attend(q, q, q, mask=torch.ones(3, 3, dtype=torch.bool), backend="flash-attn")


def test_unavailable_backend_is_reported_not_replaced(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "flash-attn")
    q = torch.zeros(1, 1, 3, 8)
    with pytest.raises(ConfigError, match=ENV_VAR):
        attend(q, q, q)


def test_environment_variable_chooses_the_backend(monkeypatch):
    q = torch.zeros(1, 1, 3, 8)
    monkeypatch.setenv(ENV_VAR, "math")
    assert resolve(None, q) == "math"
    monkeypatch.setenv(ENV_VAR, " SDPA ")
    assert resolve(None, q) == "sdpa"
    monkeypatch.setenv(ENV_VAR, "")
    assert resolve(None, q) == "sdpa"  # unset: auto


def test_set_backend_overrides_the_environment_and_a_call_overrides_both(monkeypatch):
    q = torch.zeros(1, 1, 3, 8)
    monkeypatch.setenv(ENV_VAR, "math")
    set_backend("sdpa")
    assert resolve(None, q) == "sdpa"
    assert resolve("math", q) == "math"
    set_backend(None)
    assert resolve(None, q) == "math"


def test_unknown_backend_is_a_config_error_listing_the_choices(monkeypatch):
    q = torch.zeros(1, 1, 3, 8)
    choices = ", ".join(BACKENDS)
    with pytest.raises(ConfigError, match=f"'xformers'.*{choices}"):
        set_backend("xformers")
    with pytest.raises(ConfigError, match="'flash'"):
        attend(q, q, q, backend="flash")
    with pytest.raises(ConfigError, match="'fast'"):
        backend_problem("fast")
    monkeypatch.setenv(ENV_VAR, "cudnn")
    with pytest.raises(ConfigError, match=f"{ENV_VAR}.*'cudnn'"):
        attend(q, q, q)


@pytest.mark.parametrize("shapes", [
    [(1, 3, 8), (1, 3, 8), (1, 3, 8)],  # no head axis
    [(1, 1, 3, 8), (1, 1, 4, 8), (1, 1, 5, 8)],  # k and v lengths differ
    [(1, 1, 3, 8), (1, 2, 4, 8), (1, 2, 4, 8)],  # heads differ
    [(1, 1, 3, 8), (1, 1, 4, 6), (1, 1, 4, 6)],  # head dims differ
], ids=["3d", "kv-lengths", "heads", "head-dims"])
def test_mismatched_shapes_are_config_errors(shapes):
    with pytest.raises(ConfigError, match="attend takes"):
        attend(*(torch.zeros(shape) for shape in shapes))


def test_mixed_dtypes_and_bad_masks_are_config_errors():
    q = torch.zeros(1, 1, 3, 8)
    with pytest.raises(ConfigError, match="one dtype"):
        attend(q, q.double(), q.double())
    with pytest.raises(ConfigError, match="mask must be bool"):
        attend(q, q, q, mask=torch.zeros(3, 3))  # an additive float mask would mean something else
    with pytest.raises(ConfigError, match=r"\[B, H, Lq, Lk\]"):
        attend(q, q, q, mask=torch.ones(3, 4, dtype=torch.bool))
