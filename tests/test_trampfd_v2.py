"""trampfd v2 (trampoline tables) under the emulator: every error case, the
table the program maps, invocations through it with no tracer stop."""

from __future__ import annotations

import pytest
from test_trampfd_support import Run, program, trace

EXPECTED_ERRNO = {
    "create_null": "EINVAL", "create_efault": "EFAULT", "create": "0",
    "read": "EINVAL", "lseek_2": "EINVAL", "lseek_cur": "EINVAL", "lseek_1": "0",
    "map_before": "EINVAL",
    "code_count_15": "EINVAL", "code_count_17": "EINVAL", "code_null": "EINVAL", "code_offset_2": "EINVAL",
    "code_n_0": "EINVAL", "code_n_too_many": "EINVAL", "code_reg_eax": "EINVAL", "code_reg_22": "EINVAL",
    "code_table_null": "EINVAL", "code_efault": "EFAULT", "code_ok": "0", "code_again": "EEXIST",
    "map_half": "EINVAL",
    "data_reserved": "EINVAL", "data_same_reg": "EINVAL", "data_count_8": "EINVAL", "data_ok": "0",
    "data_again": "EEXIST",
    "map_rw": "EINVAL", "map_rwx": "EINVAL", "map_r": "EINVAL", "map_len": "EINVAL", "map_shared": "EINVAL",
    "map_offset_0": "EINVAL", "map": "0", "map_again": "EEXIST",
}


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    run = trace([str(program("tf_v2")), "1000"], tmp_path_factory.mktemp("v2"))
    assert run.returncode == 0, run.stderr
    assert run.out.done
    return run


@pytest.mark.parametrize("label", sorted(EXPECTED_ERRNO))
def test_errno(table_run: Run, label: str) -> None:
    assert table_run.out.errno(label) == EXPECTED_ERRNO[label]


def test_every_call_has_an_expectation(table_run: Run) -> None:
    assert set(table_run.out.steps) == set(EXPECTED_ERRNO)


def test_info(table_run: Run) -> None:
    # 128 trampolines of 32 bytes in one page, mapped at file offset one page
    assert table_run.out.ints("info") == [128, 32, 4096, 0]
    assert table_run.out.ints("cloexec") == [1]


def test_mapping_from_another_process_is_refused(table_run: Run) -> None:
    assert table_run.out.values["map_other_process"] == "EINVAL"


def test_table_is_read_execute_never_writable(table_run: Run) -> None:
    assert table_run.out.values["table_perms"] == "r-xp"


def test_entries_load_code_and_data(table_run: Run) -> None:
    # entry X calls target(X + 10) with data X + 1 in r10: (X + 10) * 1000 + X + 1
    assert [table_run.out.ints(f"entry{x}")[0] for x in range(4)] == [10001, 11002, 12003, 13004]
    # the program rebinds entry 2 by writing its table words: other(3) with 77
    assert table_run.out.ints("rebound") == [-3077]
    n = 1000
    assert table_run.out.pairs("loop") == {"n": n, "sum": 1000 * n * (n - 1) // 2 + (n // 2) * 3}


def test_fork_child_inherits_the_table(table_run: Run) -> None:
    assert table_run.out.children["table"] == "exit=0"


def test_create_and_map_are_trampfd_events(table_run: Run) -> None:
    assert [(e["syscall"], e["categories"], e["verdict"]) for e in table_run.events] == [
        ("trampfd-create", ["trampfd"], "allowed"), ("trampfd-map", ["trampfd"], "allowed")]
    assert table_run.events[1]["len"] == 4096


def test_invocations_never_stop_in_the_tracer(tmp_path) -> None:
    few = trace([str(program("tf_v2")), "10"], tmp_path)
    many = trace([str(program("tf_v2")), "200000"], tmp_path)
    assert few.returncode == many.returncode == 0
    assert few.summary["stops"] == many.summary["stops"]
