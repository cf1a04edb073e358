"""The Pi 4 scaling factor of docs/benchmarks.md: this machine vs a Pi 4 on plain-Python n-body.

    python -m benchmarks.pi_scale [STEPS]

Runs the Computer Language Benchmarks Game n-body program (plain Python, the same loop
structure, one statement a line) for STEPS steps (default 300 000), scales its process CPU
time to 5 000 000 steps and divides the published Pi 4 figure by it. Published: 158.3 s for
5M steps on a Raspberry Pi 4 (Cortex-A72, 1.5 GHz, performance governor),
chaitanyamehta.github.io/projects/performance-analysis-of-programming-languages (its Python
version is not stated). A projection aid only: it says how much slower a Pi 4 core runs
CPython, which is most of kws-stream's CPU.
"""

from __future__ import annotations

import sys
import time

PI4_SECONDS_5M = 158.263
PI = 3.14159265358979323
SOLAR_MASS = 4 * PI * PI
DAYS_PER_YEAR = 365.24
Body = tuple[list[float], list[float], float]


def body(r: tuple[float, float, float], v: tuple[float, float, float], m: float) -> Body:
    return [*r], [x * DAYS_PER_YEAR for x in v], m * SOLAR_MASS


def system() -> list[Body]:
    return [
        body((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 1.0),
        body((4.84143144246472090e00, -1.16032004402742839e00, -1.03622044471123109e-01),
             (1.66007664274403694e-03, 7.69901118419740425e-03, -6.90460016972063023e-05), 9.54791938424326609e-04),
        body((8.34336671824457987e00, 4.12479856412430479e00, -4.03523417114321381e-01),
             (-2.76742510726862411e-03, 4.99852801234917238e-03, 2.30417297573763929e-05), 2.85885980666130812e-04),
        body((1.28943695621391310e01, -1.51111514016986312e01, -2.23307578892655734e-01),
             (2.96460137564761618e-03, 2.37847173959480950e-03, -2.96589568540237556e-05), 4.36624404335156298e-05),
        body((1.53796971148509165e01, -2.59193146099879641e01, 1.79258772950371181e-01),
             (2.68067772490389322e-03, 1.62824170038242295e-03, -9.51592254519715870e-05), 5.15138902046611451e-05),
    ]


def advance(dt: float, n: int, bodies: list[Body]) -> None:
    pairs = [(bodies[i], b) for i in range(len(bodies) - 1) for b in bodies[i + 1 :]]
    for _ in range(n):
        for ([x1, y1, z1], v1, m1), ([x2, y2, z2], v2, m2) in pairs:
            dx = x1 - x2
            dy = y1 - y2
            dz = z1 - z2
            mag = dt * ((dx * dx + dy * dy + dz * dz) ** (-1.5))
            b1m = m1 * mag
            b2m = m2 * mag
            v1[0] -= dx * b2m
            v1[1] -= dy * b2m
            v1[2] -= dz * b2m
            v2[0] += dx * b1m
            v2[1] += dy * b1m
            v2[2] += dz * b1m
        for r, [vx, vy, vz], _m in bodies:
            r[0] += dt * vx
            r[1] += dt * vy
            r[2] += dt * vz


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    bodies = system()
    px = sum(v[0] * m for _, v, m in bodies)
    py = sum(v[1] * m for _, v, m in bodies)
    pz = sum(v[2] * m for _, v, m in bodies)
    sun_v = bodies[0][1]
    sun_v[:] = [-px / SOLAR_MASS, -py / SOLAR_MASS, -pz / SOLAR_MASS]
    t0 = time.process_time()
    advance(0.01, steps, bodies)
    here = (time.process_time() - t0) * 5_000_000 / steps
    print(f"n-body 5M steps: {here:.1f} s CPU here, {PI4_SECONDS_5M} s on a Pi 4 (published): "
          f"a Pi 4 core is {PI4_SECONDS_5M / here:.1f}x slower")


if __name__ == "__main__":
    main()
