"""Erlang A (M/M/n+M): the textbook queue with customers who hang up.

Poisson arrivals (``rate`` per second), ``agents`` identical agents with exponential
handle times (mean ``aht_s``), one FIFO queue, and exponential patience (mean
``patience_s``): a waiting customer hangs up when their patience runs out. Erlang C is
the special case of infinite patience (``patience_s = math.inf``).

How it is computed (exact up to a truncation error below 1e-15, no approximation):

- The number of contacts in the system is a birth-death chain: births at ``rate``,
  deaths at ``min(k, n) / aht + max(k - n, 0) / patience``. Its stationary
  distribution ``pi`` is summed in log space (no overflow at hundreds of agents) and
  truncated where the tail falls below 1e-18 of the mode (bounded: more than
  ``MAX_STATES`` states is an error, e.g. Erlang C at a load of 0.99999).
- A customer who arrives to find ``j`` others waiting (probability ``pi[n + j]``, as
  Poisson arrivals see time averages) reaches an agent after ``V``, the sum of
  exponentials of rates ``n/aht + m/patience`` for ``m = 0..j`` (the line ahead moves by
  services and by the hang-ups of those ahead). They are answered if ``V`` is shorter
  than their own patience ``T``: ``P(V < T) = E[exp(-V/patience)] = nmu / (nmu + (j+1)theta)``
  (the product telescopes), and given that, ``V`` is the sum of exponentials of rates
  ``n/aht + m/patience`` for ``m = 1..j+1`` (exponential tilting).
- The distribution functions of those sums (hypoexponential with rates in arithmetic
  progression; the partial-fraction formula cancels catastrophically) are computed
  for all ``j`` at once by uniformization: all terms positive, so stable.

Service level, two definitions (both are returned):

- ``service_level``: answered within ``threshold_s`` / every arrival. Every hang-up
  counts against it, even one after 2 seconds. The simulator's
  :attr:`services.router.simulate.QueueReport.all_arrivals_service_level` measures this.
- ``router_service_level``: answered within ``threshold_s`` / (answered + abandoned
  after ``threshold_s``), the router's own rule
  (:func:`services.router.domain.read_model.service_level`): short abandons do not count.

Without patience (Erlang C) the two are equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MAX_STATES", "ErlangA", "erlang_a"]

#: Most states of the birth-death chain (and of a waiting line) this computes with.
MAX_STATES = 2_000_000
#: States whose probability is below this share of the largest one are left out.
_TAIL = math.log(1e-18)
#: The uniformization sum stops when this little Poisson mass is left.
_POISSON_TAIL = 1e-15


@dataclass(frozen=True, slots=True)
class ErlangA:
    """Steady-state figures of one M/M/n+M queue (times in seconds)."""

    agents: int
    #: P(wait > 0): the arrival finds every agent busy.
    p_wait: float
    #: Share of arrivals who hang up before an agent takes them.
    p_abandon: float
    #: Answered within the threshold / all arrivals.
    service_level: float
    #: Answered within the threshold / (answered + abandoned after the threshold).
    router_service_level: float
    #: Average speed of answer: mean wait of the answered (zero waits included).
    asa_s: float
    #: Mean wait of every arrival, until answered or until hanging up.
    mean_wait_s: float
    #: Share of agents' time spent handling contacts (carried load / agents).
    occupancy: float


def erlang_a(
    agents: int, rate: float, aht_s: float, patience_s: float, threshold_s: float
) -> ErlangA:
    """Erlang A for ``agents`` agents, ``rate`` arrivals a second, mean handle time
    ``aht_s``, mean patience ``patience_s`` (``math.inf``: nobody hangs up, Erlang C;
    then the load must stay below ``agents``), service-level threshold ``threshold_s``."""
    if agents < 1:
        raise ValueError("agents: at least 1")
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate: must be > 0, got {rate}")
    if not (aht_s > 0 and math.isfinite(aht_s)):
        raise ValueError(f"aht_s: must be > 0, got {aht_s}")
    if not patience_s > 0:
        raise ValueError(f"patience_s: must be > 0 (math.inf for none), got {patience_s}")
    if not (threshold_s >= 0 and math.isfinite(threshold_s)):
        raise ValueError(f"threshold_s: must be >= 0, got {threshold_s}")
    mu = 1.0 / aht_s
    theta = 0.0 if math.isinf(patience_s) else 1.0 / patience_s
    n_mu = agents * mu
    if theta == 0.0 and rate >= n_mu:
        raise ValueError(
            f"without abandonment the load {rate * aht_s:.3f} must be below {agents} agents"
        )
    pi = _stationary(agents, rate, mu, theta)
    below = math.fsum(pi[:agents])
    waiting = pi[agents:]  # waiting[j]: the arrival finds j others waiting
    p_wait = math.fsum(waiting)
    mean_queue = math.fsum(j * p for j, p in enumerate(waiting))
    # P(answered | j ahead), and E[V; answered | j]
    answered_if = [n_mu / (n_mu + (j + 1) * theta) for j in range(len(waiting))]
    weights = [p * a for p, a in zip(waiting, answered_if, strict=True)]
    answered_late_mass = math.fsum(weights)
    wait_sum = 0.0
    harmonic = 0.0
    for j, weight in enumerate(weights):
        harmonic += 1.0 / (n_mu + (j + 1) * theta)
        wait_sum += weight * harmonic
    answered = below + answered_late_mass
    p_abandon = max(0.0, 1.0 - answered)
    # answered within t: the tilted waits (rates n_mu + m theta, m = 1..j+1) below t
    within = below + _mixture_cdf(weights, n_mu + theta, theta, threshold_s)
    # waiting longer than t: exp(-theta t) P(V > t), V with rates n_mu + m theta, m = 0..j
    untilted = p_wait - _mixture_cdf(waiting, n_mu, theta, threshold_s)
    waited_longer = math.exp(-theta * threshold_s) * untilted
    answered_after = answered - within
    abandoned_after = max(0.0, waited_longer - answered_after)
    handled = answered + abandoned_after
    return ErlangA(
        agents=agents,
        p_wait=p_wait,
        p_abandon=p_abandon,
        service_level=within,
        router_service_level=within / handled if handled > 0 else 1.0,
        asa_s=wait_sum / answered if answered > 0 else math.inf,
        mean_wait_s=mean_queue / rate,
        occupancy=rate * answered / n_mu,
    )


def _stationary(agents: int, rate: float, mu: float, theta: float) -> list[float]:
    """Stationary distribution of the number in system, truncated where negligible."""
    logs = [0.0]
    log_rate = math.log(rate)
    peak = 0.0
    k = 0
    while True:
        k += 1
        death = min(k, agents) * mu + max(k - agents, 0) * theta
        value = logs[-1] + log_rate - math.log(death)
        logs.append(value)
        peak = max(peak, value)
        if k > agents and death > rate and value < peak + _TAIL:
            break
        if k >= MAX_STATES:
            raise ValueError(
                f"the queue would need more than {MAX_STATES} states: load too close to "
                "the agents with too little abandonment"
            )
    total = math.fsum(math.exp(v - peak) for v in logs)
    return [math.exp(v - peak) / total for v in logs]


def _mixture_cdf(weights: list[float], base: float, step: float, t: float) -> float:
    """``sum_j weights[j] * P(S_j <= t)`` where ``S_j`` is the sum of independent
    exponentials of rates ``base + m * step`` for ``m = 0..j``.

    Uniformization of the pure-death chain "stages left": ``r`` stages left move to
    ``r - 1`` at rate ``base + (r - 1) * step``; a customer with ``j`` ahead starts with
    ``j + 1`` stages; the result is the mass absorbed by time ``t``.
    """
    # Drop the negligible tail: it bounds the uniformization rate and the work.
    last = len(weights)
    total = math.fsum(weights)
    if total <= 0 or t <= 0:
        return 0.0
    tail = 0.0
    while last > 1 and tail + weights[last - 1] < total * 1e-16:
        tail += weights[last - 1]
        last -= 1
    stages = last  # r = 1..stages
    rates = [0.0] + [base + (r - 1) * step for r in range(1, stages + 1)]
    top = rates[stages]
    stay = [1.0 - rate / top for rate in rates]
    move = [rate / top for rate in rates]
    mass = [0.0, *weights[:last]]  # mass[r]: r stages left
    lam_t = top * t
    absorbed = 0.0
    result = 0.0
    log_lam_t = math.log(lam_t)
    seen = 0.0
    k = 0
    limit = int(lam_t + 50 + 20 * math.sqrt(lam_t))
    while True:
        weight = math.exp(-lam_t + k * log_lam_t - math.lgamma(k + 1))
        result += weight * absorbed
        seen += weight
        if (k > lam_t and 1.0 - seen < _POISSON_TAIL) or k >= limit:
            break
        # one uniformized step
        absorbed += mass[1] * move[1]
        for r in range(1, stages):
            mass[r] = mass[r] * stay[r] + mass[r + 1] * move[r + 1]
        mass[stages] *= stay[stages]
        k += 1
        if k > MAX_STATES:
            raise ValueError("uniformization needs too many steps")
    # the Poisson mass beyond the last term: at most everything absorbed by then
    return result + (1.0 - seen) * absorbed
