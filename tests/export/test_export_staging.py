"""Staging folders left by killed exports are removed by the next export; live ones are kept."""
import os
import signal
import subprocess
import sys
import time

from rocket_ctr.export.staging import _host, is_stale, make_staging, remove_stale


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_folder_of_a_dead_process_on_this_host_is_stale(tmp_path):
    dead = tmp_path / f".tmp-3-{_host()}-{dead_pid()}-abc_1"
    (dead / "variables").mkdir(parents=True)
    mine = make_staging(tmp_path, 4)
    assert mine.name.startswith(f".tmp-4-{_host()}-{os.getpid()}-")
    assert is_stale(dead) and not is_stale(mine)
    assert remove_stale(tmp_path) == [dead]
    assert not dead.exists() and mine.exists()


def test_other_hosts_and_old_names_go_only_after_max_age(tmp_path):
    other_host = tmp_path / ".tmp-1-otherhost-12345-xyz"
    old_name = tmp_path / ".tmp-2-k2j3h4"
    version = tmp_path / "2"
    for folder in (other_host, old_name, version):
        folder.mkdir()
        (folder / "saved_model.pb").write_bytes(b"x")
    assert remove_stale(tmp_path) == []
    day_ago = time.time() - 2 * 24 * 3600
    for path in (old_name, old_name / "saved_model.pb", version):
        os.utime(path, (day_ago, day_ago))
    assert remove_stale(tmp_path) == [old_name]
    assert other_host.exists() and version.exists()
    assert not is_stale(other_host, max_age_s=3600)


def test_a_sigkilled_export_leaves_a_folder_the_next_export_removes(tmp_path):
    script = ("import sys, time; from rocket_ctr.export.staging import make_staging; "
              "print(make_staging(sys.argv[1], 7), flush=True); time.sleep(60)")
    process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    left = tmp_path / os.path.basename(process.stdout.readline().strip())
    assert left.is_dir() and not is_stale(left)  # its writer is alive
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert remove_stale(tmp_path) == [left]
