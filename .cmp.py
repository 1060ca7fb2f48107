import numpy as np, torch, mlx.core as mx
from mlx_optim import native
assert native.bf16_available()
torch.manual_seed(0)
def tm(x): return mx.array(x.float().numpy()).astype(mx.bfloat16)
def diff(a, b): return float(mx.mean((a != b).astype(mx.float32)).item())
for n in (64, 512, 1024):
    X = torch.randn(n, n).bfloat16(); A = torch.randn(n, n).bfloat16() * 0.1
    x, a = tm(X), tm(A)
    t_mm = tm(X @ X.T); m_mm = native.bf16_gemm(x, x.T); p_mm = (x.astype(mx.float32) @ x.astype(mx.float32).T).astype(mx.bfloat16)
    t_add = tm(torch.addmm(A, A, A, beta=-4.775, alpha=2.0315)); m_add = native.bf16_gemm(a, a, a, 2.0315, -4.775)
    af = a.astype(mx.float32); p_add = (-4.775 * af + 2.0315 * (af @ af)).astype(mx.bfloat16)
    t_x = tm(3.4445 * X + A @ X); t_x2 = tm(torch.addmm(X, A, X, beta=3.4445))
    m_x = native.bf16_gemm(a, x, x, 1.0, 3.4445); p_x = (3.4445 * x.astype(mx.float32) + af @ x.astype(mx.float32)).astype(mx.bfloat16)
    print(n, "mm t/m t/p", diff(t_mm, m_mm), diff(t_mm, p_mm), "addmm t/m t/p", diff(t_add, m_add), diff(t_add, p_add),
          "x: t/m t/p t2/m t2/p", diff(t_x, m_x), diff(t_x, p_x), diff(t_x2, m_x), diff(t_x2, p_x))
