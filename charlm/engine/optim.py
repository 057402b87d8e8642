"""Optimizers and gradient-norm clipping.

Parameters and gradients are flat dicts {name: ndarray} (names as in the model, e.g.
"rnn.0.W"). Every update is in place and vectorised over whole arrays; optimizer state
lives in the parameter's dtype (float32 by default), a shared scratch buffer avoids
temporaries, and large arrays are swept in cache-sized blocks.

Update rules (g = gradient, t = step count starting at 1, lr = learning rate; a parameter that joins
the updates late, e.g. after `--freeze-epochs`, counts its own t from its first update, as a fresh
Adam would):
    SGD      v = μ·v + g ;  p -= lr·v                      (μ = momentum; μ = 0: p -= lr·g)
    Adam     m = β1·m + (1-β1)·g ;  v = β2·v + (1-β2)·g² ;
             m^ = m/(1-β1^t) ;  v^ = v/(1-β2^t) ;  p -= lr·m^/(√v^ + ε)
    Adagrad  G += g² ;  p -= lr·g/(√G + ε)
    RMSprop  s = ρ·s + (1-ρ)·g² ;  p -= lr·g/(√s + ε)
    ASGD     as SGD; once averaging (k > 0):  k += 1 ;  ax += (p - ax)/k    (NT-ASGD)

Two hooks for the training engine's evaluations: `evaluated(params)` (the weights to evaluate and
save: ASGD's average) and `plateau(params)` (an evaluation without improvement: ASGD starts
averaging there instead of the learning rate decaying).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from charlm.errors import CheckpointError, UsageError

BLOCK = 1 << 16  # elements per block of an in-place update (fits in L2 cache)


def clip_grad_norm(grads: dict, max_norm) -> float:
    """Clip the global L2 norm of all gradients to max_norm, in place; return the norm before.

    ‖g‖ = sqrt(Σ over all arrays of Σ g²). If ‖g‖ > max_norm every gradient is scaled by
    max_norm/‖g‖. max_norm None or <= 0: no clipping. A non-finite norm is returned
    unchanged and nothing is scaled (the caller decides what to do with the step).
    """
    total = 0.0
    for g in grads.values():
        flat = g.reshape(-1)
        total += float(np.dot(flat, flat))
    norm = math.sqrt(total)
    if max_norm is not None and max_norm > 0 and math.isfinite(norm) and norm > max_norm:
        scale = float(max_norm) / norm
        for g in grads.values():
            g *= scale
    return norm


def _positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise UsageError(f"{name} must be a positive number, got {value!r}")
    return v


def _fraction(name: str, value) -> float:
    v = float(value)
    if not 0.0 <= v < 1.0:
        raise UsageError(f"{name} must be in [0, 1), got {value!r}")
    return v


class Optimizer:
    """Base class. Subclasses set `name`, `slots` (state arrays per parameter) and `hyper`.

    .lr: learning rate (settable, e.g. by a schedule). .t: number of steps taken; .first[name]:
    the step at which a parameter's updates began (1 unless it joined late).
    .step(params, grads) updates params in place (grads are only read). State arrays are
    created lazily as zeros of the param's shape and dtype, keyed "<slot>.<param name>"
    in state_dict() (e.g. "m.rnn.0.W").
    """

    name = "base"
    default_lr = 1e-3  # the learning rate `charlm train` uses when --lr is not given
    slots: tuple[str, ...] = ()
    hyper: tuple[str, ...] = ()

    def __init__(self, lr: float):
        self.lr = _positive("learning rate", lr)
        self.t = 0
        self.first: dict[str, int] = {}
        self.state: dict[str, dict[str, np.ndarray]] = {s: {} for s in self.slots}
        self._scratch: dict[np.dtype, np.ndarray] = {}

    # -- helpers -----------------------------------------------------------------
    def _slot(self, slot: str, name: str, p: np.ndarray) -> np.ndarray:
        arr = self.state[slot].get(name)
        if arr is None:
            arr = self.state[slot][name] = np.zeros(p.shape, dtype=p.dtype)
        elif arr.shape != p.shape:
            raise CheckpointError(f"optimizer state {slot}.{name} has shape {arr.shape}, "
                                  f"parameter has {p.shape}")
        return arr

    def _buf(self, size: int, dtype) -> np.ndarray:
        """A flat scratch array of `size` elements (a view into one buffer per dtype)."""
        buf = self._scratch.get(dtype)
        if buf is None or buf.size < size:
            buf = self._scratch[dtype] = np.empty(size, dtype=dtype)
        return buf[:size]

    # -- API -----------------------------------------------------------------------
    def step(self, params: dict, grads: dict) -> None:
        """One update of every params[name] that has a grads[name] (same shape), in place.

        Large arrays are updated in blocks of BLOCK elements so that the few passes of
        an update run over cache-resident data (the result is identical elementwise).
        """
        self.t += 1
        self._begin_step()
        for name, p in params.items():
            g = grads.get(name)
            if g is None:
                continue
            if g.shape != p.shape:
                raise ValueError(f"gradient {name} has shape {g.shape}, parameter {p.shape}")
            slots = [self._slot(s, name, p) for s in self.slots]
            self._param_step(self.t - self.first.setdefault(name, self.t) + 1)
            if p.size <= BLOCK or not p.flags.c_contiguous:
                self._update(p, g, *slots, buf=self._buf(p.size, p.dtype).reshape(p.shape))
                continue
            flat = [p.reshape(-1), g.reshape(-1)] + [a.reshape(-1) for a in slots]
            buf = self._buf(BLOCK, p.dtype)
            for s in range(0, p.size, BLOCK):
                e = min(s + BLOCK, p.size)
                self._update(*(a[s:e] for a in flat), buf=buf[:e - s])

    def _begin_step(self) -> None:
        """Hook: per-step scalars (e.g. Adam's bias corrections), computed once."""

    def _param_step(self, t: int) -> None:
        """Hook: the next _update is the t-th of its parameter (t < self.t when it joined late)."""

    def _update(self, p, g, *slots, buf) -> None:  # pragma: no cover
        """Update p in place from g; slots are this parameter's state arrays, buf scratch."""
        raise NotImplementedError

    # -- the engine's evaluation hooks --------------------------------------------
    def evaluated(self, params: dict):
        """Context manager: while it is open, `params` holds the weights to evaluate and to save
        as the best model. For most optimizers they are the weights as they are."""
        return contextlib.nullcontext()

    def plateau(self, params: dict) -> bool:
        """A scheduled evaluation did not improve on the best one. True: the optimizer acted on it
        (and the learning rate is kept); False (most optimizers): the learning rate decays."""
        return False

    def state_dict(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(scalars: JSON-able dict, arrays: {"<slot>.<param>": ndarray}) — copies."""
        scalars = {"name": self.name, "lr": self.lr, "t": self.t}
        scalars.update({h: getattr(self, h) for h in self.hyper})
        late = {name: t for name, t in self.first.items() if t != 1}
        if late:
            scalars["first"] = late
        arrays = {f"{slot}.{name}": a.copy() for slot, d in self.state.items()
                  for name, a in d.items()}
        return scalars, arrays

    def load_state_dict(self, scalars: dict, arrays: dict) -> None:
        """Restore what state_dict() returned: continuing gives bit-identical steps."""
        if scalars.get("name") != self.name:
            raise CheckpointError(f"optimizer state is for {scalars.get('name')!r}, "
                                  f"not {self.name!r}")
        for h in self.hyper:
            if h in scalars:
                setattr(self, h, float(scalars[h]))
        self.lr = _positive("learning rate", scalars["lr"])
        self.t = int(scalars["t"])
        state: dict[str, dict[str, np.ndarray]] = {s: {} for s in self.slots}
        for key, a in arrays.items():
            slot, _, name = key.partition(".")
            if slot not in state or not name:
                raise CheckpointError(f"unexpected optimizer state array {key!r} for {self.name}")
            state[slot][name] = np.array(a, copy=True)
        self.state = state
        late = scalars.get("first", {})
        self.first = {name: int(late.get(name, 1)) for d in state.values() for name in d}

    def __repr__(self) -> str:
        hyper = ", ".join(f"{h}={getattr(self, h)}" for h in self.hyper)
        return f"{type(self).__name__}(lr={self.lr}{', ' if hyper else ''}{hyper})"


class SGD(Optimizer):
    """v = μ·v + g ;  p -= lr·v   (plain p -= lr·g when momentum μ = 0)."""

    name = "sgd"
    default_lr = 1.0
    hyper = ("momentum",)

    @property
    def slots(self):
        return ("v",) if self.momentum else ()

    def __init__(self, lr: float, momentum: float = 0.0):
        self.momentum = _fraction("momentum", momentum)
        super().__init__(lr)

    def _update(self, p, g, *v, buf):
        if v:
            v, = v
            v *= self.momentum
            v += g
            g = v
        np.multiply(g, self.lr, out=buf)
        p -= buf


class ASGD(SGD):
    """Non-monotonically triggered averaged SGD (NT-ASGD; Merity et al. 2017, after Polyak and
    Juditsky): SGD steps, and from the first scheduled evaluation without improvement on
    (`plateau`) also the running mean of the weights after each step since then:

        ax = p, k = 1  when averaging starts;  then after each step  k += 1 ;  ax += (p - ax)/k

    The average ax is what is evaluated and saved as the best model (`evaluated`); p goes on
    training. Starting to average takes the place of that first learning-rate decay; later
    evaluations without improvement decay the learning rate as usual. k and ax are saved with the
    optimizer's state (slot "ax"), so a resumed run averages on exactly.
    """

    name = "asgd"

    def __init__(self, lr: float, momentum: float = 0.0):
        self.k = 0  # steps averaged (0: not averaging yet)
        super().__init__(lr, momentum)

    @property
    def slots(self):
        return super().slots + (("ax",) if self.k else ())

    def _begin_step(self):
        if self.k:
            self.k += 1
            self._inv_k = 1.0 / self.k

    def _update(self, p, g, *slots, buf):
        if not self.k:
            return super()._update(p, g, *slots, buf=buf)
        *v, ax = slots
        super()._update(p, g, *v, buf=buf)
        np.subtract(p, ax, out=buf)                  # ax += (p - ax)/k
        buf *= self._inv_k
        ax += buf

    def plateau(self, params):
        if self.k:
            return False
        self.k = 1
        self.state["ax"] = {name: p.copy() for name, p in params.items()}
        return True

    @contextlib.contextmanager
    def evaluated(self, params):
        if not self.k:
            yield
            return
        kept = {name: p.copy() for name, p in params.items()}
        for name, p in params.items():
            p[...] = self.state["ax"][name]
        try:
            yield
        finally:
            for name, p in params.items():
                p[...] = kept[name]

    def state_dict(self):
        scalars, arrays = super().state_dict()
        scalars["averaged_steps"] = self.k
        return scalars, arrays

    def load_state_dict(self, scalars, arrays):
        self.k = int(scalars.get("averaged_steps", 0))
        super().load_state_dict(scalars, arrays)
        if self.k and not self.state["ax"]:
            raise CheckpointError("ASGD state says it averages but holds no average")


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba, Algorithm 1).

    Computed as p -= lr_t·m/(√v + ε_t) with lr_t = lr·√(1-β2^t)/(1-β1^t) and
    ε_t = ε·√(1-β2^t), which equals lr·m^/(√v^ + ε) exactly and needs no m^, v^ arrays.
    """

    name = "adam"
    default_lr = 3e-3
    slots = ("m", "v")
    hyper = ("beta1", "beta2", "eps")

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.beta1 = _fraction("beta1", beta1)
        self.beta2 = _fraction("beta2", beta2)
        self.eps = _positive("eps", eps)
        super().__init__(lr)

    def _begin_step(self):
        self._corrections = {}

    def _param_step(self, t):
        if t not in self._corrections:                # (lr_t, ε_t) of step t, computed once
            c2 = math.sqrt(1.0 - self.beta2 ** t)
            self._corrections[t] = (self.lr * c2 / (1.0 - self.beta1 ** t), self.eps * c2)
        self._lr_t, self._eps_t = self._corrections[t]

    def _update(self, p, g, m, v, *, buf):
        b1, b2 = self.beta1, self.beta2
        m *= b1                                  # m = β1·m + (1-β1)·g
        np.multiply(g, 1.0 - b1, out=buf)
        m += buf
        v *= b2                                  # v = β2·v + (1-β2)·g²
        np.multiply(g, g, out=buf)
        buf *= 1.0 - b2
        v += buf
        np.sqrt(v, out=buf)                      # p -= lr_t·m/(√v + ε_t)
        buf += self._eps_t
        np.divide(m, buf, out=buf)
        buf *= self._lr_t
        p -= buf


class Adagrad(Optimizer):
    """G += g² ;  p -= lr·g/(√G + ε)."""

    name = "adagrad"
    default_lr = 0.05
    slots = ("G",)
    hyper = ("eps",)

    def __init__(self, lr: float, eps: float = 1e-8):
        self.eps = _positive("eps", eps)
        super().__init__(lr)

    def _update(self, p, g, G, *, buf):
        np.multiply(g, g, out=buf)
        G += buf                                 # G += g²
        _step_scaled_by_root(p, g, G, self.lr, self.eps, buf)


class RMSprop(Optimizer):
    """s = ρ·s + (1-ρ)·g² ;  p -= lr·g/(√s + ε)."""

    name = "rmsprop"
    default_lr = 2e-3
    slots = ("s",)
    hyper = ("rho", "eps")

    def __init__(self, lr: float, rho: float = 0.99, eps: float = 1e-8):
        self.rho = _fraction("rho", rho)
        self.eps = _positive("eps", eps)
        super().__init__(lr)

    def _update(self, p, g, s, *, buf):
        s *= self.rho                            # s = ρ·s + (1-ρ)·g²
        np.multiply(g, g, out=buf)
        buf *= 1.0 - self.rho
        s += buf
        _step_scaled_by_root(p, g, s, self.lr, self.eps, buf)


def _step_scaled_by_root(p, g, acc, lr: float, eps: float, buf) -> None:
    """p -= lr·g/(√acc + ε) in place, through the scratch buffer `buf` (Adagrad, RMSprop)."""
    np.sqrt(acc, out=buf)
    buf += eps
    np.divide(g, buf, out=buf)
    buf *= lr
    p -= buf


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, Adagrad, RMSprop, ASGD)}
DEFAULT_LR = {name: cls.default_lr for name, cls in OPTIMIZERS.items()}


def make_optimizer(name: str, lr: float, **kw) -> Optimizer:
    """Build an optimizer by name ("sgd", "adam", "adagrad", "rmsprop", "asgd"); UsageError if bad."""
    cls = OPTIMIZERS.get(str(name).lower())
    if cls is None:
        raise UsageError(f"unknown optimizer {name!r}: choose from {', '.join(OPTIMIZERS)}")
    _positive("learning rate", lr)
    try:
        return cls(lr, **kw)
    except (TypeError, ValueError) as err:
        raise UsageError(f"bad option for optimizer {cls.name}: {err}") from None
