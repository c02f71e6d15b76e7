import torch


class QHM(torch.optim.Optimizer):
    """Quasi-hyperbolic momentum (Ma & Yarats, 2019): a step along (1 - nu) * grad + nu * momentum."""

    def __init__(self, params, lr=1e-3, momentum=0.999, nu=0.7, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, nu=nu, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta, nu = group["momentum"], group["nu"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.add(p, alpha=group["weight_decay"])
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(beta).add_(g, alpha=1 - beta)
                p.add_(g.mul(1 - nu).add_(buf, alpha=nu), alpha=-group["lr"])
