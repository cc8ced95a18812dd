"""Tests for drivesim.wfm.flow: the rectified-flow loss, the samplers, guidance and seeded noise."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim.errors import ConfigError
from drivesim.wfm import flow

FAST = settings(max_examples=40, deadline=None)
SHAPE = (2, 2, 3, 4, 4, 4)  # B, V, T, C, h, w


def point_mass_field(x0: torch.Tensor):
    """The exact velocity when every sample is x0: x_t = (1 - t) x0 + t noise gives v = (x_t - x0) / t."""
    return lambda x, t: (x - x0) / t.view(-1, 1, 1, 1, 1, 1)


def gaussian_field(mean: float, std: float):
    """The exact velocity for data ~ N(mean, std^2) per value; its flow carries noise n to mean + std * n."""

    def velocity(x, t):
        t = t.double().view(-1, 1, 1, 1, 1, 1)
        variance = (1 - t) ** 2 * std**2 + t**2
        return (-mean + (t - (1 - t) * std**2) / variance * (x.double() - (1 - t) * mean)).to(x.dtype)

    return velocity


def sampling_error(method: str, steps: int, shift: float = 1.0, std: float = 0.5) -> float:
    noise = flow.noise_like(SHAPE, 0, "cpu").double()
    result = flow.sample(gaussian_field(0.7, std), noise, steps, method=method, shift=shift)
    return float((result - (0.7 + std * noise)).abs().max())


def wavy_field(x, t):
    """A velocity with no structure to exploit: it moves every value, clean or not."""
    return torch.sin(3 * x) + t.view(-1, 1, 1, 1, 1, 1) * x


# ---------------------------------------------------------------- samplers

@pytest.mark.parametrize("method", flow.METHODS)
@pytest.mark.parametrize("steps, shift", [(1, 1.0), (3, 1.0), (7, 3.0), (10, 0.5)])
def test_every_sampler_lands_on_a_point_mass(method, steps, shift):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    noise = flow.noise_like(SHAPE, 2, "cpu")
    result = flow.sample(point_mass_field(x0), noise, steps, method=method, shift=shift)
    torch.testing.assert_close(result, x0, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", flow.METHODS)
def test_every_sampler_carries_noise_to_the_gaussian_it_was_trained_on(method):
    assert sampling_error(method, 64) < 0.05


def test_heun_is_more_accurate_than_euler_at_equal_steps_and_converges_faster():
    euler = {steps: sampling_error("euler", steps) for steps in (8, 16, 32)}
    heun = {steps: sampling_error("heun", steps) for steps in (8, 16, 32)}
    for steps in euler:
        assert heun[steps] < euler[steps] / 4
    # first order halves the error when the steps double, second order quarters it
    assert 1.7 < euler[16] / euler[32] < 2.3
    assert heun[16] / heun[32] > 3.5


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_unipc_beats_heun_at_equal_model_evaluations(shift):
    for evaluations in (16, 32, 64):  # heun: 2 * steps - 1 evaluations, unipc: one per step
        assert sampling_error("unipc", evaluations, shift) < sampling_error("heun", evaluations // 2, shift)


def test_unipc_agrees_with_the_diffusers_scheduler():
    scheduling = pytest.importorskip("diffusers.schedulers.scheduling_unipc_multistep")
    steps, velocity = 32, gaussian_field(0.7, 0.5)
    noise = flow.noise_like(SHAPE, 0, "cpu").double()
    scheduler = scheduling.UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, solver_order=2, predict_x0=True, solver_type="bh2",
        lower_order_final=True, final_sigmas_type="zero")
    scheduler.set_timesteps(sigmas=flow.time_grid(steps, 1.0).double().numpy()[:-1])  # it starts at 1 - 1e-6
    x = noise
    for index, timestep in enumerate(scheduler.timesteps):
        t = torch.full((SHAPE[0],), float(scheduler.sigmas[index]), dtype=torch.float64)
        x = scheduler.step(velocity(x, t), timestep, x).prev_sample
    ours = flow.sample(velocity, noise, steps, method="unipc")
    truth = 0.7 + 0.5 * noise
    # the two agree far more closely than either is to the exact answer: the same method, not just a good one
    assert float((ours - truth).abs().max()) > 1e-3
    assert float((ours - x).abs().max()) < 1e-4


@pytest.mark.parametrize("method", flow.METHODS)
def test_clean_frames_pass_through_sampling_unchanged_bit_for_bit(method):
    clean_latents = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    clean = torch.tensor([[True, False, False], [True, True, False]])
    seen = []

    def velocity(x, t):
        seen.append(x.clone())
        return wavy_field(x, t)

    result = flow.sample(velocity, flow.noise_like(SHAPE, 4, "cpu"), 5, method=method, shift=2.0,
                         clean_latents=clean_latents, clean=clean)
    for row in range(2):
        frames = clean[row]
        assert torch.equal(result[row][:, frames], clean_latents[row][:, frames])
        assert not torch.allclose(result[row][:, ~frames], clean_latents[row][:, ~frames])
        # the model sees the clean frames clean at every step, not just at the end
        for x in seen:
            assert torch.equal(x[row][:, frames], clean_latents[row][:, frames])


def test_the_model_is_asked_at_the_grid_times():
    asked = []

    def velocity(x, t):
        asked.append(t)
        return torch.zeros_like(x)

    flow.sample(velocity, flow.noise_like(SHAPE, 0, "cpu"), 6, shift=3.0)
    grid = flow.time_grid(6, 3.0)
    assert torch.equal(torch.stack([t[0] for t in asked]), grid[:-1])
    assert all(t.shape == (SHAPE[0],) and t.dtype == torch.float32 for t in asked)


@pytest.mark.parametrize("method", flow.METHODS)
@settings(max_examples=8, deadline=None)
@given(start=st.floats(0.05, 1.0), steps=st.integers(1, 6))
def test_sampling_from_a_partly_noised_state_lands_on_the_point_mass(method, start, steps):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    guess = x0 + 0.3 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    state = (1 - start) * guess + start * flow.noise_like(SHAPE, 2, "cpu")
    asked = []

    def velocity(x, t):
        asked.append(float(t[0]))
        return point_mass_field(x0)(x, t)

    result = flow.sample(velocity, state, steps, method=method, start=start)
    torch.testing.assert_close(result, x0, atol=1e-4, rtol=1e-4)
    assert asked[0] == pytest.approx(start, abs=1e-6) and max(asked) <= start + 1e-6  # float32 times


@pytest.mark.parametrize("start", [0.0, -0.5, 1.5, True])
def test_bad_start_times_are_refused_by_name(start):
    with pytest.raises(ConfigError, match="start"):
        flow.sample(point_mass_field(torch.zeros(SHAPE)), torch.zeros(SHAPE), 2, start=start)


@pytest.mark.parametrize("method", flow.METHODS)
def test_sampling_is_deterministic_under_a_seed(method):
    field = flow.guided(lambda x, t, drop: wavy_field(x, t) * (1 + len(drop[0])), 2.0, 1.5)
    first = flow.sample(field, flow.noise_like(SHAPE, 7, "cpu"), 4, method=method)
    second = flow.sample(field, flow.noise_like(SHAPE, 7, "cpu"), 4, method=method)
    third = flow.sample(field, flow.noise_like(SHAPE, 8, "cpu"), 4, method=method)
    assert torch.equal(first, second)
    assert not torch.equal(first, third)


def test_progress_shows_a_bar_over_the_steps(capsys):
    noise = flow.noise_like(SHAPE, 0, "cpu")
    flow.sample(wavy_field, noise, 3, progress=False)
    assert capsys.readouterr().err == ""
    flow.sample(wavy_field, noise, 3, method="heun", progress=True)
    shown = capsys.readouterr().err
    assert "sample (heun)" in shown and "3/3" in shown


def test_sampling_keeps_autograd_off():
    weight = torch.ones((), requires_grad=True)
    result = flow.sample(lambda x, t: weight * x, flow.noise_like(SHAPE, 0, "cpu"), 2)
    assert not result.requires_grad


# ---------------------------------------------------------------- time

@FAST
@given(st.integers(1, 500), st.floats(-20.0, 20.0), st.floats(0.01, 20.0), st.floats(0.05, 20.0))
def test_training_times_lie_strictly_inside_zero_one(batch, mean, std, shift):
    t = flow.sample_time(batch, shift=shift, mean=mean, std=std, generator=torch.Generator().manual_seed(0))
    assert t.shape == (batch,) and t.dtype == torch.float32
    assert bool(((t > 0) & (t < 1)).all())


@FAST
@given(st.floats(1.05, 10.0), st.floats(-2.0, 2.0), st.integers(0, 1000))
def test_a_shift_above_one_moves_training_times_toward_noise(shift, mean, seed):
    def draw(value):
        return flow.sample_time(256, shift=value, mean=mean, generator=torch.Generator().manual_seed(seed))

    plain, shifted, inverse = draw(1.0), draw(shift), draw(1 / shift)
    assert bool((shifted >= plain).all()) and float(shifted.mean()) > float(plain.mean())
    assert bool((inverse <= plain).all()) and float(inverse.mean()) < float(plain.mean())


def test_training_times_are_deterministic_under_a_generator_seed():
    def draw(seed):
        return flow.sample_time(64, shift=3.0, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(5), draw(5))
    assert not torch.equal(draw(5), draw(6))


def test_training_times_are_logit_normal():
    t = flow.sample_time(20000, mean=0.5, std=0.8, generator=torch.Generator().manual_seed(0)).double()
    logits = torch.log(t / (1 - t))
    assert abs(float(logits.mean()) - 0.5) < 0.03
    assert abs(float(logits.std()) - 0.8) < 0.03


@FAST
@given(st.integers(1, 200), st.floats(0.05, 20.0))
def test_the_time_grid_runs_from_exactly_one_down_to_exactly_zero(steps, shift):
    grid = flow.time_grid(steps, shift)
    assert grid.shape == (steps + 1,)
    assert grid[0] == 1 and grid[-1] == 0
    assert bool((grid[1:] < grid[:-1]).all())
    plain = flow.time_grid(steps, 1.0)
    if shift > 1:
        assert bool((grid >= plain).all())


# ---------------------------------------------------------------- loss

def loss_inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(SHAPE, generator=generator)
    noise = torch.randn(SHAPE, generator=generator)
    t = torch.rand(SHAPE[0], generator=generator)
    return x0, t, noise


def test_the_loss_is_the_velocity_error_over_noisy_frames_only():
    x0, t, noise = loss_inputs()
    clean = torch.tensor([[True, False, False], [True, True, False]])
    prediction = torch.randn(SHAPE, generator=torch.Generator().manual_seed(9))
    loss = flow.flow_loss(lambda x, time: prediction, x0, t, noise, clean)
    noisy = ~clean
    expected = torch.cat([((prediction - (noise - x0))[row][:, noisy[row]] ** 2).flatten() for row in range(2)]).mean()
    torch.testing.assert_close(loss, expected)


def test_channel_weights_scale_each_channels_error():
    x0, t, noise = loss_inputs(5)
    prediction = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    weights = torch.rand(SHAPE[3], generator=torch.Generator().manual_seed(4)) * 3
    loss = flow.flow_loss(lambda x, time: prediction, x0, t, noise, None, channel_weights=weights)
    squared = (prediction - (noise - x0)) ** 2
    torch.testing.assert_close(loss, (squared * weights[:, None, None]).mean())
    uniform = flow.flow_loss(lambda x, time: prediction, x0, t, noise, None, channel_weights=torch.ones(SHAPE[3]))
    torch.testing.assert_close(uniform, flow.flow_loss(lambda x, time: prediction, x0, t, noise, None))
    with pytest.raises(ConfigError, match="channel_weights"):
        flow.flow_loss(lambda x, time: prediction, x0, t, noise, None, channel_weights=torch.ones(3))


def test_the_loss_is_zero_on_clean_frames_whatever_the_model_says_there():
    x0, t, noise = loss_inputs(1)
    clean = torch.tensor([[True, True, False], [True, False, False]])
    seen = {}

    def velocity(x, time):
        seen["x"], seen["t"] = x, time
        perfect = noise - x0
        mask = clean.view(2, 1, 3, 1, 1, 1)
        return torch.where(mask, torch.full_like(perfect, float("nan")), perfect)

    loss = flow.flow_loss(velocity, x0, t, noise, clean)
    assert float(loss) == 0.0
    time = t.view(-1, 1, 1, 1, 1, 1)
    expected_x = torch.where(clean.view(2, 1, 3, 1, 1, 1), x0, (1 - time) * x0 + time * noise)
    assert torch.equal(seen["x"], expected_x)  # clean frames enter as x0 itself
    assert torch.equal(seen["t"], t)


def test_clean_frames_get_no_gradient():
    x0, t, noise = loss_inputs(2)
    clean = torch.tensor([[True, False, False], [False, False, False]])
    prediction = torch.zeros(SHAPE, requires_grad=True)
    flow.flow_loss(lambda x, time: prediction, x0, t, noise, clean).backward()
    assert bool((prediction.grad[0][:, 0] == 0).all())
    assert bool((prediction.grad[0][:, 1:] != 0).all()) and bool((prediction.grad[1] != 0).all())


def test_a_batch_of_only_clean_frames_has_zero_loss_that_still_backpropagates():
    x0, t, noise = loss_inputs(3)
    weight = torch.ones((), requires_grad=True)
    loss = flow.flow_loss(lambda x, time: weight * x, x0, t, noise, torch.ones(2, 3, dtype=torch.bool))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert weight.grad is not None and float(weight.grad) == 0.0


def test_without_clean_frames_every_frame_counts():
    x0, t, noise = loss_inputs(4)
    loss = flow.flow_loss(lambda x, time: torch.zeros_like(x), x0, t, noise, None)
    torch.testing.assert_close(loss, ((noise - x0) ** 2).mean())


def test_clean_frame_masks_cover_the_first_k_frames():
    assert flow.clean_frames(2, 2, 4).tolist() == [[True, True, False, False]] * 2
    assert flow.clean_frames(torch.tensor([0, 3]), 2, 3).tolist() == [[False] * 3, [True] * 3]
    with pytest.raises(ConfigError, match="k"):
        flow.clean_frames(5, 1, 4)
    with pytest.raises(ConfigError, match="k"):
        flow.clean_frames(torch.tensor([1, -1]), 2, 4)


# ---------------------------------------------------------------- guidance

def conditional_fields():
    """Distinct velocities per dropped-condition set, recording each call's batch and drops."""
    calls = []
    offsets = {frozenset(): 0.0, frozenset({flow.TEXT}): 1.0, frozenset({flow.TEXT, flow.LAYOUT}): -2.5}

    def velocity3(x, t, drop):
        calls.append((x.shape[0], drop))
        shift = torch.tensor([offsets[d] for d in drop]).view(-1, 1, 1, 1, 1, 1)
        return torch.cos(x + shift) * (1 + shift) + t.view(-1, 1, 1, 1, 1, 1)

    return velocity3, calls


@FAST
@given(st.floats(-5.0, 10.0), st.floats(-5.0, 10.0))
def test_guidance_combines_the_predictions_as_the_formula_says(text_scale, layout_scale):
    velocity3, calls = conditional_fields()
    x, t = flow.noise_like(SHAPE, 0, "cpu"), torch.tensor([0.3, 0.8])
    result = flow.guided(velocity3, text_scale, layout_scale)(x, t)
    batch = SHAPE[0]
    conditional = velocity3(x, t, (frozenset(),) * batch)
    no_text = velocity3(x, t, (frozenset({flow.TEXT}),) * batch)
    neither = velocity3(x, t, (frozenset({flow.TEXT, flow.LAYOUT}),) * batch)
    expected = neither + layout_scale * (no_text - neither) + text_scale * (conditional - no_text)
    torch.testing.assert_close(result, expected, atol=1e-4, rtol=1e-4)
    assert len(calls) == 4  # the guided predictions came from one forward


def test_guidance_at_scales_one_is_one_plain_conditional_call():
    velocity3, calls = conditional_fields()
    x, t = flow.noise_like(SHAPE, 0, "cpu"), torch.tensor([0.3, 0.8])
    result = flow.guided(velocity3, 1.0, 1.0)(x, t)
    assert calls == [(2, (frozenset(), frozenset()))]
    assert torch.equal(result, velocity3(x, t, (frozenset(),) * 2))


def test_guidance_batches_the_predictions_it_needs_along_the_batch():
    velocity3, calls = conditional_fields()
    x, t = flow.noise_like(SHAPE, 0, "cpu"), torch.tensor([0.3, 0.8])
    flow.guided(velocity3, 4.0, 2.0)(x, t)
    (batch, drops), = calls
    assert batch == 6 and len(drops) == 6
    assert set(drops) == {frozenset(), frozenset({flow.TEXT}), frozenset({flow.TEXT, flow.LAYOUT})}
    calls.clear()
    flow.guided(velocity3, 3.0, 1.0)(x, t)  # layout at 1: the fully unconditional prediction has no weight
    assert calls[0][0] == 4 and frozenset({flow.TEXT, flow.LAYOUT}) not in calls[0][1]


# ---------------------------------------------------------------- noise

def test_noise_is_the_same_for_a_seed_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    first, second = flow.noise_like(SHAPE, 11, "cpu"), flow.noise_like(list(SHAPE), 11, torch.device("cpu"))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first, second) and first.dtype == torch.float32 and first.shape == SHAPE
    assert not torch.equal(first, flow.noise_like(SHAPE, 12, "cpu"))
    assert abs(float(first.std()) - 1) < 0.1


# ---------------------------------------------------------------- bad input

bad_positive = st.one_of(st.floats(max_value=0.0), st.sampled_from([math.nan, math.inf, -math.inf, "2", None, True]))
bad_steps = st.one_of(st.integers(max_value=0), st.sampled_from([1.5, 2.0, True, "3", None]))
bad_scale = st.sampled_from([math.nan, math.inf, -math.inf, "1", None, True])


@FAST
@given(bad_steps)
def test_bad_step_counts_are_refused_by_name(steps):
    with pytest.raises(ConfigError, match="steps"):
        flow.sample(wavy_field, flow.noise_like(SHAPE, 0, "cpu"), steps)
    with pytest.raises(ConfigError, match="steps"):
        flow.time_grid(steps)


@FAST
@given(bad_positive)
def test_bad_shifts_are_refused_by_name(shift):
    with pytest.raises(ConfigError, match="shift"):
        flow.sample(wavy_field, flow.noise_like(SHAPE, 0, "cpu"), 2, shift=shift)
    with pytest.raises(ConfigError, match="shift"):
        flow.time_grid(3, shift)
    with pytest.raises(ConfigError, match="shift"):
        flow.sample_time(4, shift=shift)


@FAST
@given(bad_scale, st.booleans())
def test_bad_guidance_scales_are_refused_by_name(scale, text):
    name = "text_scale" if text else "layout_scale"
    with pytest.raises(ConfigError, match=name):
        flow.guided(lambda x, t, drop: x, **{name: scale, ("layout_scale" if text else "text_scale"): 1.0})


@pytest.mark.parametrize("method", ["rk4", "Euler", "", None])
def test_unknown_methods_are_refused_with_the_choices(method):
    with pytest.raises(ConfigError, match="method.*euler, heun, unipc"):
        flow.sample(wavy_field, flow.noise_like(SHAPE, 0, "cpu"), 2, method=method)


def test_other_bad_inputs_are_refused_by_name():
    noise = flow.noise_like(SHAPE, 0, "cpu")
    clean = torch.zeros(2, 3, dtype=torch.bool)
    cases = [
        ("std", lambda: flow.sample_time(4, std=0.0)),
        ("mean", lambda: flow.sample_time(4, mean=math.nan)),
        ("batch", lambda: flow.sample_time(0)),
        ("seed", lambda: flow.noise_like(SHAPE, -1, "cpu")),
        ("seed", lambda: flow.noise_like(SHAPE, 1.0, "cpu")),
        ("shape", lambda: flow.noise_like((2, 0), 1, "cpu")),
        ("noise", lambda: flow.sample(wavy_field, torch.zeros(2, 3, 4), 2)),
        ("clean_latents and clean", lambda: flow.sample(wavy_field, noise, 2, clean=clean)),
        ("clean", lambda: flow.sample(wavy_field, noise, 2, clean_latents=noise, clean=clean[:, :2])),
        ("clean", lambda: flow.sample(wavy_field, noise, 2, clean_latents=noise, clean=clean.float())),
        ("clean_latents", lambda: flow.sample(wavy_field, noise, 2, clean_latents=noise[:1], clean=clean)),
        ("t", lambda: flow.flow_loss(wavy_field, noise, torch.zeros(3), noise, None)),
        ("noise", lambda: flow.flow_loss(wavy_field, noise, torch.zeros(2), noise[:1], None)),
        ("velocity_fn", lambda: flow.flow_loss(lambda x, t: x[:1], noise, torch.zeros(2), noise, None)),
    ]
    for name, call in cases:
        with pytest.raises(ConfigError, match=name):
            call()

