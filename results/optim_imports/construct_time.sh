# Construction and first step of torch.optim.SGD, SGDO and AdamO, each in a fresh process (3 each):
# whether it imports torch._dynamo and what that costs. Run from outside the checkout (so that PYTHONPATH,
# not the current directory, picks the overshoot package):  cd /tmp && bash /work/main/results/optim_imports/construct_time.sh
# Another version: PYTHONPATH=/path/to/old/checkout bash .../construct_time.sh
for opt in "torch.optim.SGD(p, lr=0.1)" "SGDO(p, lr=0.1)" "AdamO(p)"; do
  for rep in 1 2 3; do
    python -c "
import sys, time, torch
from overshoot.optim import SGDO, AdamO
p = [torch.nn.Parameter(torch.zeros(3))]
t = time.perf_counter(); opt = $opt; c = time.perf_counter() - t
p[0].grad = torch.ones(3); t = time.perf_counter(); opt.step(); opt.zero_grad(); s = time.perf_counter() - t
import overshoot; print(overshoot.__file__, '$opt', f'construct {c:.3f} s, first step+zero_grad {s:.3f} s, torch._dynamo imported:', 'torch._dynamo' in sys.modules)"
  done
done
