"""Thread count of a run: the cores the affinity mask and the cgroup quota allow, minus the busy ones."""

import pytest
import torch

from napari_ganrec import threads
from napari_ganrec.threads import cgroup_cpu_quota, choose_threads, configure_threads


@pytest.fixture
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_choose_threads_counts_the_affinity_mask():
    assert choose_threads(affinity={0, 1, 2, 3}, quota=None, load=None) == 4
    assert choose_threads(affinity={5}, quota=None, load=None) == 1
    assert choose_threads(affinity=6, quota=None, load=None) == 6


def test_choose_threads_respects_the_cgroup_quota():
    assert choose_threads(affinity=8, quota=2.0, load=None) == 2
    assert choose_threads(affinity=8, quota=2.5, load=None) == 3  # a part of a core is worth a thread
    assert choose_threads(affinity=8, quota=0.5, load=None) == 1
    assert choose_threads(affinity=2, quota=16.0, load=None) == 2


def test_choose_threads_leaves_the_busy_cores_alone():
    assert choose_threads(affinity=4, quota=None, load=2.0) == 2
    assert choose_threads(affinity=4, quota=None, load=1.4) == 3
    assert choose_threads(affinity=4, quota=None, load=2.6) == 1
    assert choose_threads(affinity=2, quota=None, load=7.0) == 1  # never below one
    assert choose_threads(affinity=4, quota=None, load=3.0, busy_own=2.0) == 3  # our own work is not "busy"
    assert choose_threads(affinity=8, quota=3.0, load=1.0) == 2  # quota first, then the load


def test_choose_threads_rejects_nonsense():
    with pytest.raises(ValueError, match="quota"):
        choose_threads(affinity=2, quota=0.0, load=None)
    with pytest.raises(ValueError, match="load"):
        choose_threads(affinity=2, quota=None, load=-1.0)
    with pytest.raises(ValueError, match="affinity"):
        choose_threads(affinity=0, quota=None, load=None)


def _cgroup(tmp_path, files: dict[str, str]):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_cgroup_v2_quota_is_read_from_the_process_cgroup(tmp_path):
    root = _cgroup(tmp_path, {"job/cpu.max": "150000 100000\n", "cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(root, "0::/job\n") == pytest.approx(1.5)
    assert cgroup_cpu_quota(root, "0::/\n") is None  # "max": no limit
    assert cgroup_cpu_quota(tmp_path / "nothing", "0::/\n") is None


def test_cgroup_v1_quota(tmp_path):
    root = _cgroup(tmp_path, {"cpu/box/cpu.cfs_quota_us": "300000", "cpu/box/cpu.cfs_period_us": "100000",
                              "cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"})
    assert cgroup_cpu_quota(root, "4:memory:/x\n1:cpu,cpuacct:/box\n") == pytest.approx(3.0)
    assert cgroup_cpu_quota(root, "1:cpu,cpuacct:/\n") is None  # -1: unlimited


def test_configure_threads_applies_an_explicit_count(keep_torch_threads, monkeypatch):
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    assert configure_threads(3) == 3 and torch.get_num_threads() == 3
    monkeypatch.setenv(threads.ENV_VAR, "2")
    assert configure_threads() == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv(threads.ENV_VAR, "many")
    with pytest.raises(ValueError, match=threads.ENV_VAR):
        configure_threads()
    with pytest.raises(ValueError, match="threads"):
        configure_threads(0)


def test_configure_threads_leaves_a_users_choice_alone(keep_torch_threads, monkeypatch):
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_configured", None)
    monkeypatch.setattr(threads, "_initial", 4)  # torch's default here; the user set 1 (conftest)
    torch.set_num_threads(1)
    assert configure_threads(affinity=4, quota=None, load=None) == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(threads, "_initial", 1)  # 1 is torch's default: chosen from the free cores
    assert configure_threads(affinity=3, quota=None, load=None) == 3 and torch.get_num_threads() == 3
    assert configure_threads(affinity=3, quota=None, load=1.0) == 2  # its own choice is renewed
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert configure_threads(affinity=3, quota=None, load=None) == 2  # the environment's choice stays


@pytest.mark.parametrize("preset, expected", [
    ({}, ["GOMP_SPINCOUNT=10000", "OMP_WAIT_POLICY=-"]),  # a brief spin, then sleep
    ({"OMP_WAIT_POLICY": "PASSIVE"}, ["GOMP_SPINCOUNT=-", "OMP_WAIT_POLICY=PASSIVE"]),  # the user's policy
    ({"OMP_WAIT_POLICY": "ACTIVE"}, ["GOMP_SPINCOUNT=-", "OMP_WAIT_POLICY=ACTIVE"]),
    ({"GOMP_SPINCOUNT": "300"}, ["GOMP_SPINCOUNT=300", "OMP_WAIT_POLICY=-"]),  # the user's count
])
def test_importing_the_package_bounds_openmp_spinning_unless_told_otherwise(preset, expected):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(preset)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    code = ("import os, napari_ganrec; "
            "print(*(f'{k}={os.environ.get(k, \"-\")}' for k in ('GOMP_SPINCOUNT', 'OMP_WAIT_POLICY')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    assert out == expected
