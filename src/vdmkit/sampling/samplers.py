"""Sampler functions. One signature for all:

    sample_X(denoiser, x, ts, process, *, generator=None, callback=None, **knobs) -> x

``denoiser(x_t, t) -> x0_hat`` (condition and guidance already bound), ``x`` is the starting noise
(B, C, T, H, W), ``ts`` the descending times to visit (see timesteps.py); every sampler steps between
consecutive times and ends on the clean data. No state between calls; randomness only from
``generator``. Each step checks for NaN/inf and raises NonFiniteError with the step index.

All samplers work in x0-space with the process's alpha(t), sigma(t), so one implementation serves VP
and rectified flow where the maths allows; each registry entry's ``processes`` says which.
"""

from __future__ import annotations

from typing import Callable

import torch

from vdmkit.device import randn
from vdmkit.diffusion.process import NoiseProcess, x0_to_eps
from vdmkit.errors import ConfigError, NonFiniteError

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[int, torch.Tensor, torch.Tensor], None]
# LCM's boundary condition c_skip, c_out (Song et al. 2023, consistency models; LCM uses sigma_data 0.5 and
# scales discrete timesteps by 10 so that c_skip ~ 0 away from t = 0).
LCM_SIGMA_DATA = 0.5
LCM_TIMESTEP_SCALING = 10.0


def _pairs(ts: torch.Tensor, process: NoiseProcess) -> list[tuple]:
    """(t, t_next) along the trajectory: consecutive visited times, the last t_next the process's clean time;
    or the explicit pairs of a (steps, 2) schedule (timesteps.make_timesteps with final / previous rules)."""
    cast = float if process.continuous else int
    if ts.numel() == 0:  # every sampler returned its starting noise unchanged (before 2026-12-06)
        raise ConfigError("the sampler was given no timesteps; pass at least one")
    if ts.ndim == 2:
        return [(cast(t), cast(n)) for t, n in ts.tolist()]
    ts = [cast(t) for t in ts]
    if any(a <= b for a, b in zip(ts, ts[1:])):
        raise ConfigError(f"timesteps must run strictly downwards (noise to data), got {ts[:8]}"
                          + (" ..." if len(ts) > 8 else ""))
    return list(zip(ts, ts[1:] + [process.clean_time]))


def _batch_t(t, x: torch.Tensor) -> torch.Tensor:
    dtype = torch.float64 if isinstance(t, float) else torch.long
    return torch.full((x.shape[0],), t, device=x.device, dtype=dtype)


def _coeffs(process: NoiseProcess, t, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return process.alpha_sigma(torch.tensor(t), x)


# diffusers' DPM-Solver and UniPC schedulers set a zero-SNR schedule's last alpha_bar to 2**-24 (a finite log-SNR for
# the first step); vdmkit's samplers of those names do the same on discrete VP processes, to match them (3.3e-4 apart
# at 4 steps before 2026-12-06)
ZERO_SNR_ALPHA_BAR = 2.0**-24


def _multistep_coeffs(process: NoiseProcess, t, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, s = _coeffs(process, t, x)
    pure_noise = a == 0
    if not process.continuous and bool(pure_noise.any()):
        a = torch.where(pure_noise, torch.full_like(a, ZERO_SNR_ALPHA_BAR**0.5), a)
        s = torch.where(pure_noise, torch.full_like(s, (1 - ZERO_SNR_ALPHA_BAR)**0.5), s)
    return a, s


def _check_finite(x: torch.Tensor, step: int, t) -> None:
    if not torch.isfinite(x).all():
        raise NonFiniteError(f"NaN/inf in the sample at step {step} (t={t}); nothing was written")


def _noise(x: torch.Tensor, generator) -> torch.Tensor:
    """Drawn on the generator's device (a CPU generator: the same noise on every device), then moved to x's."""
    return randn(x.shape, generator, x.device, x.dtype)


def _lambda(alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Half log-SNR, log(alpha / sigma): +inf at clean data, -inf at pure noise."""
    return torch.log(alpha) - torch.log(sigma)


def _usable(lams: list[torch.Tensor]) -> int:
    """How many of the newest log-SNRs are finite: the history points a multistep step can extrapolate from. A flow's
    t = 1 (alpha 0) is at lambda = -inf: as a history point it put inf into UniPC's order-3 system, NaN from step 2 on
    (before 2026-12-07); DPM-Solver++(2M)'s and UniPC order 2's terms for it were exactly 0, i.e. first order."""
    n = 0
    for lam in reversed(lams):
        if not bool(torch.isfinite(lam).all()):
            break
        n += 1
    return n


def _finish(x, x0, i, t, callback):
    _check_finite(x, i, t)
    if callback is not None:
        callback(i, x, x0)


@torch.no_grad()
def sample_ddim(denoiser: Denoise, x: torch.Tensor, ts: torch.Tensor, process: NoiseProcess, *, eta: float = 0.0,
                generator: torch.Generator | None = None, callback: Callback | None = None) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12): deterministic at ``eta=0``, DDPM-like at ``eta=1``.
    At eta = 0 this is the first-order ODE step in x0-form for any process (Euler for rectified flow)."""
    for i, (t, t_next) in enumerate(_pairs(ts, process)):
        a_t, s_t = _coeffs(process, t, x)
        a_n, s_n = _coeffs(process, t_next, x)
        x0 = denoiser(x, _batch_t(t, x))
        eps = x0_to_eps(x0, x, a_t, s_t)
        # eq. 16: sigma_t(eta) = eta * sqrt((1 - a_prev^2) / (1 - a_t^2)) * sqrt(1 - a_t^2 / a_prev^2)
        noise_std = eta * (s_n / s_t) * (1 - (a_t / a_n) ** 2).clamp(min=0).sqrt()
        x = a_n * x0 + (s_n**2 - noise_std**2).clamp(min=0).sqrt() * eps
        if eta and s_n > 0:
            x = x + noise_std * _noise(x, generator)
        _finish(x, x0, i, t, callback)
    return x


@torch.no_grad()
def sample_ddpm(denoiser: Denoise, x: torch.Tensor, ts: torch.Tensor, process: NoiseProcess, *,
                generator: torch.Generator | None = None, callback: Callback | None = None) -> torch.Tensor:
    """DDPM ancestral sampling from the posterior q(x_prev | x_t, x0_hat) (Ho et al. 2020, eq. 6-7),
    generalised to strided timesteps; variance-preserving processes only."""
    if not process.name.startswith("vp"):  # its posterior is VP's: on rectified flow it returned 999 for 0.5
        raise ConfigError(f"DDPM sampling needs a variance-preserving process, not {process.name!r}; use ddim or euler")
    for i, (t, t_next) in enumerate(_pairs(ts, process)):
        a_t, s_t = _coeffs(process, t, x)
        a_n, s_n = _coeffs(process, t_next, x)
        x0 = denoiser(x, _batch_t(t, x))
        alpha_step_sq = (a_t / a_n) ** 2  # alpha_t in DDPM notation for this (possibly strided) step
        beta = 1 - alpha_step_sq
        x = (a_n * beta / s_t**2) * x0 + (alpha_step_sq.sqrt() * s_n**2 / s_t**2) * x
        if s_n > 0:
            x = x + (beta * s_n**2 / s_t**2).sqrt() * _noise(x, generator)
        _finish(x, x0, i, t, callback)
    return x


@torch.no_grad()
def sample_euler(denoiser: Denoise, x: torch.Tensor, ts: torch.Tensor, process: NoiseProcess, *,
                 generator: torch.Generator | None = None, callback: Callback | None = None) -> torch.Tensor:
    """Euler on the rectified-flow ODE dx/dt = velocity = (x - x0_hat) / t (SD3's FlowMatchEuler)."""
    for i, (t, t_next) in enumerate(_pairs(ts, process)):
        x0 = denoiser(x, _batch_t(t, x))
        x = x + (t_next - t) * (x - x0) / t
        _finish(x, x0, i, t, callback)
    return x


@torch.no_grad()
def sample_heun(denoiser: Denoise, x: torch.Tensor, ts: torch.Tensor, process: NoiseProcess, *,
                generator: torch.Generator | None = None, callback: Callback | None = None) -> torch.Tensor:
    """Heun's second-order method on the rectified-flow ODE (Karras et al. 2022, algorithm 1 without churn):
    2 model calls per step, Euler on the last step into t = 0."""
    for i, (t, t_next) in enumerate(_pairs(ts, process)):
        x0 = denoiser(x, _batch_t(t, x))
        d = (x - x0) / t
        x_euler = x + (t_next - t) * d
        if t_next > 0:
            d_next = (x_euler - denoiser(x_euler, _batch_t(t_next, x))) / t_next
            x = x + (t_next - t) * (d + d_next) / 2
        else:
            x = x_euler
        _finish(x, x0, i, t, callback)
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Denoise, x: torch.Tensor, ts: torch.Tensor, process: NoiseProcess, *,
                    generator: torch.Generator | None = None, callback: Callback | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, algorithm 2): multistep second order in log-SNR time, data
    prediction, first order on the first step and on the last step into clean data (as diffusers)."""
    prev = None  # (lambda, x0) of the previous step
    for i, (t, t_next) in enumerate(_pairs(ts, process)):
        a_t, s_t = _multistep_coeffs(process, t, x)
        a_n, s_n = _multistep_coeffs(process, t_next, x)
        x0 = denoiser(x, _batch_t(t, x))
        lam, lam_n = _lambda(a_t, s_t), _lambda(a_n, s_n)
        h = lam_n - lam
        d = x0
        if prev is not None and s_n > 0 and _usable([prev[0]]):
            r = (lam - prev[0]) / h
            d = x0 + (x0 - prev[1]) / (2 * r)
        x = (s_n / s_t) * x - a_n * torch.expm1(-h) * d
        prev = (lam, x0)
        _finish(x, x0, i, t, callback)
    return x


def _unipc_terms(h: torch.Tensor, rks: list[torch.Tensor], order: int):
    """phi-function coefficients of UniPC's B(h) = e^h - 1 variant ("bh2") in data prediction
    (Zhao et al. 2023, algorithm 1 and eq. 9): h*phi_1, B(h), the order x order system R rho = b."""
    hh = -h
    h_phi_1 = torch.expm1(hh)
    b_h = h_phi_1  # bh2: B(h) = e^h - 1, the same value as h phi_1(h)
    h_phi_k = h_phi_1 / hh - 1
    factorial = 1
    rows, b = [], []
    r = torch.stack(rks + [torch.ones_like(h)])
    for k in range(1, order + 1):
        rows.append(r ** (k - 1))
        b.append(h_phi_k * factorial / b_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    return h_phi_1, b_h, torch.stack(rows), torch.stack(b)


def _solve(rows: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``rows^-1 b`` in ``dtype``; a half-precision system is solved in float64 (torch has no fp16/bf16 solver)."""
    if rows.dtype in (torch.float16, torch.bfloat16):
        rows, b = rows.double(), b.double()
    return torch.linalg.solve(rows, b).to(dtype)


@torch.no_grad()
def sample_unipc(denoiser: Denoise, x: torch.Tensor, ts: torch.Tensor, process: NoiseProcess, *, order: int = 2,
                 corrector: bool = True, generator: torch.Generator | None = None,
                 callback: Callback | None = None) -> torch.Tensor:
    """UniPC (Zhao et al. 2023): a multistep predictor (UniP) of ``order`` with a corrector (UniC) that reuses
    the next step's model call, so it costs one call per step; lower orders on the first and last steps, and while
    the extrapolation would use a pure-noise time (log-SNR -inf: a flow's t = 1)."""
    if order not in (1, 2, 3):
        raise ConfigError(f"UniPC order must be 1, 2 or 3, got {order!r}")
    pairs = _pairs(ts, process)
    lams, x0s = [], []
    x_before, s_before, prev_order = None, None, 0
    # the step coefficients (log-SNR differences, phi functions, the rho system) in fp32 at least: in fp16 they
    # overflow within three steps
    coef = x if x.dtype in (torch.float32, torch.float64) else x.new_empty((), dtype=torch.float32)
    for i, (t, t_next) in enumerate(pairs):
        a_t, s_t = _multistep_coeffs(process, t, coef)
        x0 = denoiser(x, _batch_t(t, x))
        lam = _lambda(a_t, s_t)
        if corrector and x_before is not None:  # UniC: correct x_t with the model call just made at x_t
            h = lam - lams[-1]
            rks = [(lams[-1 - k] - lams[-1]) / h for k in range(1, prev_order)]
            h_phi_1, b_h, rows, b = _unipc_terms(h, rks, prev_order)
            rhos = torch.tensor([0.5], dtype=coef.dtype) if prev_order == 1 else _solve(rows, b, coef.dtype)
            res = sum(rho * (x0s[-1 - k] - x0s[-1]) / rk for k, (rho, rk) in enumerate(zip(rhos[:-1], rks), 1))
            x = (s_t / s_before) * x_before - a_t * h_phi_1 * x0s[-1] - a_t * b_h * (res + rhos[-1] * (x0 - x0s[-1]))
        lams.append(lam)
        x0s.append(x0)
        # lower orders on the first steps (too few points), the last ones, and while a point is at pure noise
        this_order = min(order, len(pairs) - i, max(1, _usable(lams)))
        a_n, s_n = _multistep_coeffs(process, t_next, coef)
        h = _lambda(a_n, s_n) - lam
        rks = [(lams[-1 - k] - lam) / h for k in range(1, this_order)]
        h_phi_1, b_h, rows, b = _unipc_terms(h, rks, this_order)
        x_before, s_before = x, s_t
        x = (s_n / s_t) * x - a_n * h_phi_1 * x0
        if this_order > 1:  # UniP: rho solves the (order-1) system; 1/2 for order 2
            rhos = torch.tensor([0.5], dtype=coef.dtype) if this_order == 2 else \
                _solve(rows[:-1, :-1], b[:-1], coef.dtype)
            x = x - a_n * b_h * sum(rho * (x0s[-1 - k] - x0) / rk for k, (rho, rk) in enumerate(zip(rhos, rks), 1))
        prev_order = this_order
        _finish(x, x0, i, t, callback)
    return x


def lcm_boundary(process: NoiseProcess, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LCM's (c_skip, c_out) at times ``t`` (float64, shaped as ``t``): the consistency function is
    ``c_skip x_t + c_out x0_hat``, so that it is the identity at t = 0 (c_skip 1, c_out 0) and the model's estimate
    elsewhere. What the sampler applies and what consistency distillation trains, the same numbers."""
    scaled = process.model_time(t).to(torch.float64) * LCM_TIMESTEP_SCALING
    c_skip = LCM_SIGMA_DATA**2 / (scaled**2 + LCM_SIGMA_DATA**2)
    c_out = scaled / (scaled**2 + LCM_SIGMA_DATA**2).sqrt()
    return c_skip, c_out


@torch.no_grad()
def sample_lcm(denoiser: Denoise, x: torch.Tensor, ts: torch.Tensor, process: NoiseProcess, *,
               boundary: bool = True, generator: torch.Generator | None = None,
               callback: Callback | None = None) -> torch.Tensor:
    """Multistep consistency sampling (Luo et al. 2023, LCM algorithm 3): predict x0, re-noise it to the next
    time with fresh noise, repeat. ``boundary`` applies LCM's c_skip / c_out parameterisation."""
    for i, (t, t_next) in enumerate(_pairs(ts, process)):
        x0 = denoiser(x, _batch_t(t, x))
        if boundary:
            c_skip, c_out = lcm_boundary(process, torch.tensor(t))
            x0 = c_out.item() * x0 + c_skip.item() * x
        a_n, s_n = _coeffs(process, t_next, x)
        x = a_n * x0 + s_n * _noise(x, generator) if s_n > 0 else x0
        _finish(x, x0, i, t, callback)
    return x


@torch.no_grad()
def invert_ddim(denoiser: Denoise, x: torch.Tensor, ts: torch.Tensor, process: NoiseProcess, *,
                callback: Callback | None = None) -> torch.Tensor:
    """DDIM inversion (Song et al. 2021, sec. 4.3; Mokady et al. 2023, eq. 2): clean data ``x`` -> the noise at
    ``ts[0]`` that :func:`sample_ddim` (eta 0) along the same ``ts`` maps back to ``x``. The deterministic ODE step of
    each sampling pair (t, t_next) is run backwards, t_next -> t, with the model evaluated at the noisier time t on
    the current x (the usual approximation eps(x_t_next, t) ~ eps(x_t, t), exact as the steps shrink)."""
    for i, (t, t_next) in enumerate(reversed(_pairs(ts, process))):
        a_c, s_c = _coeffs(process, t_next, x)  # where x is now
        a_t, s_t = _coeffs(process, t, x)  # where it goes
        x0 = denoiser(x, _batch_t(t, x))
        eps = x0_to_eps(x0, x, a_t, s_t)  # the model's noise estimate at time t
        x0 = (x - s_c * eps) / a_c  # the clean data x implies under that noise (x itself at the first step)
        x = a_t * x0 + s_t * eps
        _finish(x, x0, i, t, callback)
    return x
