"""The supervised and distillation scaling laws (distillation scaling laws eq. 1 and eq. 8), their Table 6
coefficients, and their log-space forms with exact gradients (App. F, eqs. 44 and 49) for the fitter.

Supervised:    L(N, D) = E + (A/N^alpha + B/D^beta)^gamma
Distillation:  L_S(N_S, D_S, L_T) = L_T + L_T^-c0 (1 + (L_T / (d1 L~_S))^(1/f1))^(-c1 f1) (A'/N_S^alpha' + B'/D_S^beta')^gamma'
with L~_S = L(N_S, D_S) from the supervised law. N is the parameter count the runs were fitted on (the paper:
non-embedding parameters), D tokens, losses in nats.
"""

from __future__ import annotations

import numpy as np

SUPERVISED_KEYS = ("A", "B", "E", "alpha", "beta", "gamma")
DISTILLATION_KEYS = ("A", "B", "alpha", "beta", "gamma", "c0", "c1", "f1", "d1")

# Table 6 point estimates (C4, 4096 context, 143M-12.6B non-embedding parameters).
TABLE6_SUPERVISED = {"A": 3355.0, "B": 18186.0, "E": 1.220, "alpha": 0.408, "beta": 0.431, "gamma": 0.452}
TABLE6_DISTILLATION = {
    "A": 2243.0, "B": 24181.0, "alpha": 0.321, "beta": 0.637, "gamma": 0.764,
    "c0": 2.549, "c1": 522.6, "f1": 0.090, "d1": 1.315,
}

# App. H eqs. 66, 68 with the paper's architecture (App. I): aspect ratio d_model/n_layers = 128, omega = 12
# (MHA, gated FFN of ratio 8/3), n_ctx = 4096, n_vocab = 32168 (App. G.4). c1 = sigma1 n_ctx, c2 = sigma2 n_vocab.
# These reproduce Table 13's C_fwd-approx(2N+sigma) column within its rounding.
PAPER_RHO, PAPER_OMEGA, PAPER_CTX, PAPER_VOCAB = 128.0, 12.0, 4096, 32168
PAPER_FLOPS_C1 = (1.0 / (PAPER_RHO * PAPER_OMEGA**2)) ** (1 / 3) * PAPER_CTX  # ~155.06
PAPER_FLOPS_C2 = (PAPER_RHO / PAPER_OMEGA) ** (1 / 3) * PAPER_VOCAB  # ~70811


def fixed_aspect_constants(aspect_ratio: float, omega: float, context: int, vocab_size: int) -> tuple[float, float]:
    """(c1, c2) of F(N) = 2N(1 + c1 N^-1/3 + c2 N^-2/3) for a fixed-aspect-ratio family (App. H.1)."""
    sigma1 = (1.0 / (aspect_ratio * omega**2)) ** (1 / 3)
    sigma2 = (aspect_ratio / omega) ** (1 / 3)
    return sigma1 * context, sigma2 * vocab_size


# ---- natural form ---------------------------------------------------------------------------------------


def supervised_loss(n, d, p: dict):
    """L(N, D), eq. 1. Broadcasts over arrays."""
    n, d = np.asarray(n, float), np.asarray(d, float)
    return p["E"] + (p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]) ** p["gamma"]


def distillation_loss(n_s, d_s, l_t, p: dict, sup: dict):
    """L_S(N_S, D_S, L_T), eq. 8, evaluated in log space (eq. 49) so extreme c1 f1 never overflows."""
    n_s, d_s, l_t = (np.asarray(v, float) for v in (n_s, d_s, l_t))
    l_tilde = supervised_loss(n_s, d_s, sup)
    return np.exp(distillation_log_loss(_theta(p, DISTILLATION_KEYS), np.log(n_s), np.log(d_s), np.log(l_t), np.log(l_tilde)))


def supervised_limit(n, p: dict):
    """L(N, D -> inf) = E + (A N^-alpha)^gamma (App. E.6 eq. 35): the best a model of size N can do."""
    return p["E"] + (p["A"] / np.asarray(n, float) ** p["alpha"]) ** p["gamma"]


# ---- log form with gradients, in the fitter's variables -------------------------------------------------
# Supervised theta = (log A, log B, log E, alpha, beta, gamma); distillation theta =
# (log A', log B', alpha', beta', gamma', c0, c1, f1, log d1): the variables and grid of App. F.


def to_theta(p: dict, law: str) -> np.ndarray:
    keys = SUPERVISED_KEYS if law == "supervised" else DISTILLATION_KEYS
    return _theta(p, keys)


def _theta(p: dict, keys) -> np.ndarray:
    t = np.array([p[k] for k in keys], float)
    logged = ("A", "B", "E") if keys == SUPERVISED_KEYS else ("A", "B", "d1")
    with np.errstate(divide="ignore"):  # a coefficient that underflowed to 0 is log 0 = -inf: its term vanishes
        for k in logged:
            t[keys.index(k)] = np.log(p[k])
    return t


def from_theta(theta, law: str) -> dict:
    keys = SUPERVISED_KEYS if law == "supervised" else DISTILLATION_KEYS
    logged = ("A", "B", "E") if law == "supervised" else ("A", "B", "d1")
    return {k: float(np.exp(v)) if k in logged else float(v) for k, v in zip(keys, theta)}


def supervised_log_loss(theta, log_n, log_d, grad=False):
    """log L (eq. 44); with grad=True also d log L / d theta, shape (n, 6); with grad="vjp" a function
    w -> sum_i w_i d log L_i / d theta (the fitter's gradient without forming the Jacobian)."""
    la, lb, le, alpha, beta, gamma = theta
    s1, s2 = la - alpha * log_n, lb - beta * log_d
    m = np.logaddexp(s1, s2)
    g = gamma * m
    y = np.logaddexp(le, g)
    if not grad:
        return y
    p1, p2 = np.exp(s1 - m), np.exp(s2 - m)
    qe, qg = np.exp(le - y), np.exp(g - y)
    cols = (gamma * p1, gamma * p2, None, -gamma * p1 * log_n, -gamma * p2 * log_d, m)  # times qg; log E: qe
    if grad == "vjp":
        return y, lambda w: np.array([np.dot(w, qe) if c is None else np.dot(w * qg, c) for c in cols])
    return y, np.stack([qe if c is None else qg * c for c in cols], axis=1)


def distillation_log_loss(theta, log_n, log_d, log_lt, log_ltilde, grad=False):
    """log L_S (eq. 49); with grad=True also d log L_S / d theta, shape (n, 9); grad="vjp" as above."""
    la, lb, alpha, beta, gamma, c0, c1, f1, ld1 = theta
    s1, s2 = la - alpha * log_n, lb - beta * log_d
    m = np.logaddexp(s1, s2)
    z = (log_lt - log_ltilde - ld1) / f1
    h = np.logaddexp(0.0, z)  # log(1 + (L_T / (d1 L~_S))^(1/f1))
    k = -c0 * log_lt - c1 * f1 * h + gamma * m
    y = np.logaddexp(log_lt, k)
    if not grad:
        return y
    p1, p2 = np.exp(s1 - m), np.exp(s2 - m)
    sig = np.exp(z - h)  # sigmoid(z), d h / d z
    qk = np.exp(k - y)
    cols = (gamma * p1, gamma * p2, -gamma * p1 * log_n, -gamma * p2 * log_d, m,
            -log_lt, -f1 * h, -c1 * (h - sig * z), c1 * sig)  # all times qk
    if grad == "vjp":
        return y, lambda w: np.array([np.dot(w * qk, c) for c in cols])
    return y, np.stack(cols, axis=1) * qk[:, None]
