"""The explain pass's parsers and pure functions, on text as bpftrace, strace, /proc and py-spy print it."""

from __future__ import annotations

import json
from pathlib import Path

from iolab.analysis.explain import Call, Sampled, blocked_sites, p99_us, thread_group, write_rows
from iolab.measure import procfs
from iolab.measure.explain.fds import classify, classify_strace
from iolab.measure.explain.sampler import parse_raw
from iolab.measure.explain.tracer import (
    ORIGIN_ACCEPTED,
    OUTPUT_SYSCALLS,
    StraceParser,
    bpftrace_program,
    parse_bpftrace,
)


def test_bpftrace_program_filters_the_tree_and_keys_syscalls_by_index() -> None:
    prog = bpftrace_program([10, 11], ["write", "sendto"])
    assert prog.count("/pid == 10 || pid == 11/") >= 2
    assert "sys_exit_sendto" in prog and "args->fd" in prog
    assert '"write"' not in prog  # strings in map keys trip bpftrace 0.17's verifier
    assert "sys_exit_accept4" in prog and "sys_enter_close" in prog


def test_parse_bpftrace_maps_and_histogram() -> None:
    i = OUTPUT_SYSCALLS.index("sendto")
    key = f"5,7,9,{i},{ORIGIN_ACCEPTED}"
    lines = [
        {"type": "map", "data": {"@n": {key: 4}}},
        {"type": "map", "data": {"@b": {key: 400}}},
        {"type": "map", "data": {"@ns": {key: 8000}}},
        {"type": "hist", "data": {"@h": {key: [{"min": 1024, "max": 2047, "count": 3},
                                               {"min": 2048, "max": 4095, "count": 1}]}}},
        {"type": "map", "data": {"@comm": {"7": "AnyIO worker 3"}}},
    ]
    names: dict[int, str] = {}
    (g,) = parse_bpftrace("\n".join(json.dumps(x) for x in lines), names)
    assert (g.pid, g.tid, g.fd, g.syscall, g.calls, g.bytes, g.total_ns, g.origin) == (5, 7, 9, "sendto", 4, 400,
                                                                                       8000, ORIGIN_ACCEPTED)
    assert g.hist == [(1024, 2047, 3), (2048, 4095, 1)]
    assert names == {7: "AnyIO worker 3"}


def test_strace_parser_joins_unfinished_calls_and_keeps_the_fd_link() -> None:
    p = StraceParser(100, {100: 100, 101: 100})
    for line in (
        'write(1<pipe:[55]>, ""..., 62) = 62 <0.000010>',
        '[pid 101] sendto(7<TCP:[127.0.0.1:8000->127.0.0.1:40000]>, ""..., 145, 0, NULL, 0 <unfinished ...>',
        '[pid 100] write(1<pipe:[55]>, ""..., 62) = 62 <0.000004>',
        "[pid 101] <... sendto resumed>) = 145 <0.000020>",
        '[pid 101] write(9<anon_inode:[eventfd]>, "\\1\\0\\0\\0\\0\\0\\0\\0", 8) = -1 EAGAIN (Resource '
        "temporarily unavailable) <0.000002>",
        "+++ exited with 0 +++",
    ):
        p.feed(line + "\n")
    groups = {(g.tid, g.syscall, g.fd): g for g in p.result()}
    assert groups[(100, "write", 1)].calls == 2 and groups[(100, "write", 1)].bytes == 124
    send = groups[(101, "sendto", 7)]
    assert (send.calls, send.bytes, send.total_ns, send.link) == (1, 145, 20000,
                                                                  "TCP:[127.0.0.1:8000->127.0.0.1:40000]")
    assert groups[(101, "write", 9)].calls == 1 and groups[(101, "write", 9)].bytes == 0


def test_classify_fds(tmp_path: Path) -> None:
    net = tmp_path / "7" / "net"
    net.mkdir(parents=True)
    (net / "tcp").write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:1F40 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 111 1\n"
        "   1: 0100007F:A000 0100007F:0202 01 00000000:00000000 00:00000000 00000000     0        0 222 1\n")
    (net / "unix").write_text(
        "Num       RefCount Protocol Flags    Type St Inode Path\n"
        "0000: 00000002 00000000 00000000 0001 03 333\n"
        "0000: 00000002 00000000 00000000 0001 03 334\n"
        "0000: 00000002 00000000 00000000 0001 03 400 /dev/log\n")
    socks = procfs.sockets(7, root=str(tmp_path))
    assert socks[111].local_port == 8000 and socks[222].remote == "127.0.0.1:514" and socks[400].remote == "/dev/log"
    held = {"socket:[333]", "socket:[334]", "pipe:[9]"}
    assert classify(7, "socket:[111]", socks, held, 8000).destination == "client-socket"
    assert classify(8, "socket:[222]", socks, held, 8000).target == "tcp 127.0.0.1:514"
    assert classify(9, "socket:[333]", socks, held, 8000).destination == "loop-wakeup"
    assert classify(10, "socket:[400]", socks, held, 8000).target == "unix:/dev/log"
    assert classify(11, "anon_inode:[eventfd]", socks, held, 8000).destination == "loop-wakeup"
    assert classify(12, "pipe:[9]", socks, held, 8000).target == "self-pipe"
    assert classify(13, "/var/log/app.log", socks, held, 8000).destination == "file"
    assert classify(1, "pipe:[5]", socks, held, 8000).destination == "stdout"
    assert classify(2, "/dev/null", socks, held, 8000).destination == "stderr"
    assert classify_strace(7, "TCP:[127.0.0.1:8000->127.0.0.1:40000]", set(), 8000).destination == "client-socket"
    assert classify_strace(7, "TCP:[127.0.0.1:40000->10.0.0.1:9200]", set(), 8000).target == "tcp 10.0.0.1:9200"
    assert classify_strace(7, 'UNIX-STREAM:[5->6,"/dev/log"]', set(), 8000).target == "unix:/dev/log"
    assert classify_strace(7, "UNIX-STREAM:[5->6]", {"socket:[6]"}, 8000).destination == "loop-wakeup"


def test_rows_group_a_numbered_pool_and_count_per_request() -> None:
    assert thread_group("AnyIO worker 12") == "AnyIO worker"
    assert thread_group("Thread-463 (process_request_thread)") == "Thread (process_request_thread)"
    assert thread_group("python3") == "python3"
    calls = [Call("stdout", "pipe", "pipe", "write", f"worker {i}", 100 + i, 25, 250, 25_000,
                  ((1024, 2047, 24), (65536, 131071, 1))) for i in range(40)]
    calls.append(Call("client-socket", "port 1", "tcp", "sendto", "main (python)", 1, 2000, 20_000, 2_000_000,
                      ((512, 1023, 2000),)))
    rows = {r.destination: r for r in write_rows(calls, 1000)}
    assert rows["stdout"].threads == 40 and rows["stdout"].thread == "worker"
    assert rows["stdout"].calls_per_request == 1.0 and rows["stdout"].bytes_per_request == 10.0
    assert rows["stdout"].in_syscw and not rows["client-socket"].in_syscw
    assert rows["client-socket"].calls_per_request == 2.0
    assert p99_us([(1024, 2047, 99), (65536, 131071, 1)]) == 2.048
    assert p99_us([(1024, 2047, 98), (65536, 131071, 2)]) == 131.072


def test_blocked_sites_share_of_each_thread_group() -> None:
    samples = [Sampled("MainThread", "output-syscall", "send (h.py:1)", 10), Sampled("MainThread", "other", "x", 90),
               Sampled("w 1", "gil-wait", "f (a.py:2)", 5), Sampled("w 2", "other", None, 5)]
    sites = {(b.site, b.thread): b for b in blocked_sites(samples)}
    assert sites[("send (h.py:1)", "MainThread")].share_of_thread_wall == 0.1
    assert sites[("f (a.py:2)", "w")].share_of_thread_wall == 0.5 and sites[("f (a.py:2)", "w")].state == "gil-wait"


def test_parse_py_spy_raw() -> None:
    text = (
        "py-spy> Sampling process 47 times a second. Press Control-C to exit.\n"
        'process 5:"python x.py";thread (7): writer;thread_run (libpython3.11.so.1.0);w (x.py:4);'
        "os_write (libpython3.11.so.1.0);write (libc.so.6) 3\n"
        "thread (7): writer;w (x.py:4);os_write (libpython3.11.so.1.0);pthread_cond_timedwait (libc.so.6) 5\n"
        "thread (5): MainThread;<module> (x.py:9);s (x.py:7) 9\n")
    got = {(s.tid, s.state, s.site): s.count for s in parse_raw(text)}
    assert got == {(7, "output-syscall", "w (x.py:4)"): 3, (7, "gil-wait", "w (x.py:4)"): 5,
                   (5, "other", "s (x.py:7)"): 9}
