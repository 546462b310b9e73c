#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Tests of shmdump and shmcat as an operator runs them: real processes, real segments.

Usage: tooltests.py TEST   (meson runs one TEST per test() entry; exit 77 = skipped)

Environment (set by tests/tools/meson.build): SHMDUMP, SHMCAT, SEGTOOL (programs),
GOLDEN (directory of expected outputs), SHMRING_TEST_SCALE (float, default 1).
SHMRING_UPDATE_GOLDEN=1 rewrites the golden files instead of comparing.

No sleeps to let another process catch up: every wait is on a pipe, a process exit or
the ring itself. Segment names hold this process's pid and are removed at the end.
"""
import fcntl
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

SKIP = 77
SHMDUMP = os.environ.get("SHMDUMP", "shmdump")
SHMCAT = os.environ.get("SHMCAT", "shmcat")
SEGTOOL = os.environ.get("SEGTOOL", "segtool")
GOLDEN = os.environ.get("GOLDEN", os.path.join(os.path.dirname(__file__), "golden"))
SCALE = float(os.environ.get("SHMRING_TEST_SCALE", "1") or 1)
UPDATE = os.environ.get("SHMRING_UPDATE_GOLDEN") == "1"

_counter = [0]
_made = []
_procs = []


def name(tag):
    _counter[0] += 1
    n = "shmring-tooltest-%s-%d-%d" % (tag, os.getpid(), _counter[0])
    _made.append(n)
    return n


def cleanup():
    for p in _procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    for n in _made:
        try:
            os.unlink("/dev/shm/" + n)
        except FileNotFoundError:
            pass


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def run(args, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("timeout", 120)
    return subprocess.run(args, **kw)


def txt(b):
    return b.decode("utf-8", "replace")


def one_line_error(r, what):
    """A failure the issue wants: non-zero exit, not a crash, one line on stderr."""
    err = txt(r.stderr)
    check(r.returncode > 0, "%s: exit %d (want >0, not a signal)\n%s" % (what, r.returncode, err))
    lines = err.splitlines()
    check(len(lines) == 1, "%s: want one line on stderr, got %r" % (what, err))
    return lines[0]


# ---------------------------------------------------------------------------------
# segments with known contents

def segtool(nm, cap=65536, records=5, length=100, consume=2, mode="hold", kind="spsc"):
    """Start segtool; for hold/producer/reader modes, return the process once it said
    ready; detach and lapped run to the end."""
    args = [SEGTOOL, kind, nm, str(cap), str(records), str(length), str(consume), mode]
    if mode in ("detach", "lapped"):
        r = run(args)
        check(r.returncode == 0, "segtool failed: %s" % txt(r.stderr))
        return None
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    _procs.append(p)
    line = p.stdout.readline()
    check(line == b"ready\n", "segtool did not start: %r" % line)
    return p


def release(p):
    p.stdin.close()
    check(p.wait(timeout=60) == 0, "segtool exit %d" % p.returncode)


def normalise_text(out, nm):
    """Replace what changes from run to run: name, times, pids, the checksum over them."""
    out = out.replace(nm, "NAME")
    out = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", "TIME", out)
    out = re.sub(r"created_ns \d+", "created_ns NS", out)
    out = re.sub(r"(?m)^(checksum +)0x[0-9a-f]{16}", r"\g<1>0xCHECKSUM", out)
    out = re.sub(r"(?m)^(creator_pid +)\d+", r"\g<1>PID", out)
    # the wait backend is a build option (-Dwait_backend=sem sets SHMRING_SEG_F_SEMWAIT)
    out = re.sub(r"(?m)^(flags +)0x([0-9a-f]{8})( semwait)?$",
                 lambda m: "%s0x%08x" % (m.group(1), int(m.group(2), 16) & ~2), out)
    # participant rows: slot role state PID ...
    out = re.sub(r"(?m)^(  \d+ +[a-z]+ +[a-z]+ +)\d+ ", lambda m: m.group(1) + "PID".ljust(
        len(m.group(0)) - len(m.group(1)) - 1) + " ", out)
    return out


def normalise_json(obj, nm, pids):
    """Replace what changes from run to run, in place, and return obj."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("created_ns", "joined_ns", "start_time") and isinstance(v, int):
                obj[k] = "NS"
            elif k in ("checksum", "checksum_computed"):
                obj[k] = "CHECKSUM"
            elif k in ("pid", "creator_pid") and v in pids:
                obj[k] = "PID"
            elif k == "flags" and isinstance(v, int):
                obj[k] = v & ~2  # SHMRING_SEG_F_SEMWAIT: the wait backend, a build option
            else:
                obj[k] = normalise_json(v, nm, pids)
    elif isinstance(obj, list):
        return [normalise_json(v, nm, pids) for v in obj]
    elif isinstance(obj, str):
        return obj.replace(nm, "NAME")
    return obj


MAN_SHMDUMP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "man",
                           "shmdump.1")


def man_fields(kind):
    """The ring.fields keys shmdump(1) documents for kind: the bold words of the man
    page's ".B kind" entry in the JSON section."""
    with open(MAN_SHMDUMP) as f:
        man = f.read()
    sec = man[man.index(".SH JSON OUTPUT"):]
    sec = sec[:sec.index("\n.SH ", 1)]
    m = re.search(r"(?m)^\.B %s\n(.*?)(?=^\.(TP|PP|SH|RE)\b)" % re.escape(kind), sec, re.S)
    check(m, "shmdump.1 documents no ring fields for %s" % kind)
    return set(re.findall(r"\\fB([^\\]+)\\fR", m.group(1)))


def check_fields_documented(kind, fields):
    doc = man_fields(kind)
    check(doc == set(fields), "shmdump.1's fields for %s differ from show --json: "
          "undocumented %r, documented but not emitted %r"
          % (kind, sorted(set(fields) - doc), sorted(doc - set(fields))))


def golden(fname, actual):
    path = os.path.join(GOLDEN, fname)
    if UPDATE:
        with open(path, "w") as f:
            f.write(actual)
        return
    with open(path) as f:
        want = f.read()
    if want != actual:
        import difflib
        diff = "".join(difflib.unified_diff(want.splitlines(True), actual.splitlines(True),
                                            "golden/" + fname, "actual"))
        raise Fail("output differs from golden/%s:\n%s" % (fname, diff))


# ---------------------------------------------------------------------------------
# shmdump

def t_dump_show_golden():
    nm = name("show")
    p = segtool(nm)
    try:
        r = run([SHMDUMP, "show", nm, "--records", "2"])
        check(r.returncode == 0, "show exit %d: %s" % (r.returncode, txt(r.stderr)))
        golden("show_spsc.txt", normalise_text(txt(r.stdout), nm))
        # the magic's label is the segment's first 8 bytes as they are in the file
        with open("/dev/shm/" + nm, "rb") as f:
            first = f.read(8).decode("ascii")
        check(first == "SHMHRNG1", "the file starts with %r" % first)
        magic = [l for l in txt(r.stdout).splitlines() if l.startswith("magic ")]
        check(len(magic) == 1 and magic[0].split()[1:] == ["0x31474e52484d4853", "(%s)" % first],
              "show's magic line should label the value with the file's bytes %r: %r"
              % (first, magic))
        # the same through a path rather than a name
        r2 = run([SHMDUMP, "show", "/dev/shm/" + nm])
        check(r2.returncode == 0, "show PATH exit %d" % r2.returncode)
        check(txt(r2.stdout).splitlines()[2:8] == txt(r.stdout).splitlines()[2:8],
              "show by path differs from show by name")
    finally:
        release(p)
    # a broadcast channel left behind by a writer and a lapped reader: the reader line
    # and the reader page's statistics added in
    nm = name("show-bcast")
    segtool(nm, cap=4, records=10, length=100, consume=0, kind="bcast", mode="lapped")
    r = run([SHMDUMP, "show", nm, "--records", "1"])
    check(r.returncode == 0, "show exit %d: %s" % (r.returncode, txt(r.stderr)))
    golden("show_bcast.txt", normalise_text(txt(r.stdout), nm))


def t_dump_json_golden():
    nm = name("json")
    p = segtool(nm)
    try:
        out = {}
        for key, args in (("show", ["show", nm, "--json", "--records", "2"]),
                          ("check", ["check", nm, "--json"]),
                          ("list", ["list", nm, "--json"])):
            r = run([SHMDUMP] + args)
            check(r.returncode == 0, "%s exit %d: %s" % (key, r.returncode, txt(r.stderr)))
            try:
                out[key] = json.loads(r.stdout)
            except ValueError as e:
                raise Fail("%s --json is not JSON (%s):\n%s" % (key, e, txt(r.stdout)))
        check(isinstance(out["list"], list) and len(out["list"]) == 1,
              "list --json with a pattern: want one element, got %r" % out["list"])
        check(out["show"]["consistent"] is True and out["check"]["consistent"] is True,
              "fresh segment not consistent")
        check_fields_documented("spsc", out["show"]["ring"]["fields"])
        norm = normalise_json(out, nm, [p.pid])
        golden("show_spsc.json", json.dumps(norm, indent=2, sort_keys=True) + "\n")
    finally:
        release(p)
    nm = name("json-bcast")
    segtool(nm, cap=4, records=10, length=100, consume=0, kind="bcast", mode="lapped")
    out = {}
    for key, args in (("show", ["show", nm, "--json", "--records", "1"]),
                      ("list", ["list", nm, "--json"])):
        r = run([SHMDUMP] + args)
        check(r.returncode == 0, "%s exit %d: %s" % (key, r.returncode, txt(r.stderr)))
        out[key] = json.loads(r.stdout)
    norm = normalise_json(out, nm, [out["show"]["header"]["creator_pid"]])
    golden("show_bcast.json", json.dumps(norm, indent=2, sort_keys=True) + "\n")


def t_dump_list_liveness():
    nm = name("list")
    p = segtool(nm, mode="producer")
    r = run([SHMDUMP, "list", nm])
    check(r.returncode == 0, "list exit %d" % r.returncode)
    rows = [l.split() for l in txt(r.stdout).splitlines()[1:]]
    check(len(rows) == 1 and rows[0][0] == nm, "list row missing: %r" % txt(r.stdout))
    row = rows[0]
    # NAME KIND SIZE(2 words) CAPACITY(2 words) FILL PRODUCERS CONSUMERS STATE
    check(row[1] == "spsc" and row[-3] == "1/0" and row[-2] == "0/0" and row[-1] == "ok",
          "live producer, consumer left: %r" % row)
    p.kill()
    p.wait()
    r = run([SHMDUMP, "list", nm, "--json"])
    e = json.loads(r.stdout)[0]
    check(e["state"] == "stale" and e["producers"] == {"live": 0, "dead": 1},
          "after SIGKILL: want stale with a dead producer, got %r" % e)
    # the plain listing skips files that are not segments, silently
    junk = "/dev/shm/" + name("junk")
    with open(junk, "wb") as f:
        f.write(b"not a segment" * 1000)
    r = run([SHMDUMP])
    check(r.returncode == 0 and junk[9:] not in txt(r.stdout) and not r.stderr,
          "plain shmdump must list quietly without the junk file")
    check(nm in txt(r.stdout), "plain shmdump must list the segment")
    # broadcast readers are not in the participant table: the reader lock shows them
    bc = name("list-bcast")
    w = segtool(bc, cap=4, records=3, length=100, consume=0, kind="bcast")
    rd = segtool(bc, cap=4, records=0, length=100, consume=0, kind="bcast", mode="reader")

    def bcast_row():
        r = run([SHMDUMP, "list", bc])
        rows = [l.split() for l in txt(r.stdout).splitlines()[1:]]
        check(r.returncode == 0 and len(rows) == 1, "bcast list: %r" % txt(r.stdout))
        return rows[0]

    def bcast_json():
        r = run([SHMDUMP, "list", bc, "--json"])
        return json.loads(r.stdout)[0]

    row = bcast_row()
    check(row[1] == "bcast" and row[-3] == "1/0" and row[-2] == "1/0" and row[-1] == "ok",
          "bcast writer and a reader, both live: %r" % row)
    w.kill()
    w.wait()
    row = bcast_row()
    check(row[-3] == "0/1" and row[-2] == "1/0" and row[-1] == "ok",
          "bcast writer killed, reader live: want ok with a live consumer, got %r" % row)
    e = bcast_json()
    check(e["state"] == "ok" and e["consumers"]["live"] == 1 and
          e["consumers"]["exact"] is False and e["readers"]["lock_held"] is True and
          e["readers"]["open_count"] == 1, "bcast --json with a live reader: %r" % e)
    rd.kill()
    rd.wait()
    e = bcast_json()
    check(e["state"] == "stale" and e["consumers"]["live"] == 0 and
          e["readers"]["lock_held"] is False,
          "bcast writer and reader killed: want stale, got %r" % e)
    check(e["consumers"]["dead"] == 1, "the killed reader is still counted open, so dead: %r" % e)


def t_dump_other_kinds():
    """MPMC, pool and broadcast segments: decoded, consistent, records walked."""
    want = {"mpmc": ("slots", 16, 3), "pool": ("frames", 4, 2), "bcast": ("slots", 4, 3)}
    procs = []
    try:
        for kind, (unit, cap, pending) in sorted(want.items()):
            nm = name(kind)
            p = segtool(nm, cap=cap, records=3, length=3000, consume=1 if kind == "pool" else 0,
                        kind=kind)
            procs.append(p)
            r = run([SHMDUMP, "show", nm, "--json", "--records", "10"])
            check(r.returncode == 0, "%s show exit %d: %s" % (kind, r.returncode, txt(r.stderr)))
            j = json.loads(r.stdout)
            ring = j["ring"]
            check(j["consistent"] and j["header"]["kind"] == kind and ring["decoded"],
                  "%s: %r" % (kind, j))
            check(ring["unit"] == unit and ring["capacity"] == cap,
                  "%s: unit %r capacity %r" % (kind, ring["unit"], ring["capacity"]))
            check(len(j["records"]) == pending, "%s: %d records, want %d" %
                  (kind, len(j["records"]), pending))
            rec = j["records"][0]
            # the pattern of the first pending record: byte i of record k = k*31+i
            k = 1 if kind == "pool" else 0
            check(rec["head_hex"][:4] == "%02x%02x" % ((k * 31) & 255, (k * 31 + 1) & 255),
                  "%s: first record %r" % (kind, rec))
            if kind == "pool":
                check(all(x["checksum_ok"] is True for x in j["records"]),
                      "pool frames carry checksums that verify: %r" % j["records"])
            r = run([SHMDUMP, "show", nm, "--records", "1"])
            check(r.returncode == 0 and ("%-16s capacity %d %s" % (kind, cap, unit)) in txt(r.stdout),
                  "%s text show:\n%s" % (kind, txt(r.stdout)))
            r = run([SHMDUMP, "check", nm])
            check(r.returncode == 0, "%s check exit %d: %s" % (kind, r.returncode, txt(r.stdout)))
            check_fields_documented(kind, ring["fields"])
            if kind == "pool":
                pool_checksum_damage(nm, j["records"][0])
    finally:
        for p in procs:
            release(p)
    bcast_laps_counted()


def pool_checksum_damage(nm, rec):
    """A flipped payload byte in a copy of a checksummed pool: check names the frame's
    checksum, show --records says BAD."""
    tmp = tempfile.mkdtemp(prefix="shmdump-test-")
    try:
        path = os.path.join(tmp, "pool.seg")
        b = bytearray(open("/dev/shm/" + nm, "rb").read())
        b[rec["offset"] + 17] ^= 0x40
        with open(path, "wb") as f:
            f.write(b)
        field = "pool.meta[%d].checksum" % rec["tag"]  # the tag is the buffer index
        r = run([SHMDUMP, "check", path])
        lines = txt(r.stdout).splitlines()
        check(r.returncode == 1 and any(l.startswith(field + " = ") for l in lines),
              "check of a pool with a damaged frame: exit %d, %r" % (r.returncode, lines))
        r = run([SHMDUMP, "check", path, "--json"])
        j = json.loads(r.stdout)
        check(r.returncode == 1 and [p["field"] for p in j["problems"]] == [field],
              "check --json of a damaged frame: %r" % j)
        r = run([SHMDUMP, "show", path, "--records", "10"])
        check(r.returncode == 1 and "checksum BAD" in txt(r.stdout),
              "show --records of a damaged frame: exit %d\n%s" % (r.returncode, txt(r.stdout)))
        r = run([SHMDUMP, "show", path, "--records", "10", "--json"])
        recs = json.loads(r.stdout)["records"]
        bad = [x for x in recs if x["offset"] == rec["offset"]]
        check(len(bad) == 1 and bad[0]["checksum_ok"] is False and
              all(x["checksum_ok"] is True for x in recs if x is not bad[0]),
              "show --records --json of a damaged frame: %r" % recs)
    finally:
        shutil.rmtree(tmp)


def bcast_laps_counted():
    """Readers count laps, sleeps and timeouts on the reader page: show adds them in."""
    nm = name("bcast-lapped")
    # 4 slots, 10 records, a reader at record 0 reads once: lapped, records 0..6 missed
    segtool(nm, cap=4, records=10, length=100, consume=0, kind="bcast", mode="lapped")
    r = run([SHMDUMP, "show", nm, "--json"])
    check(r.returncode == 0, "show exit %d: %s" % (r.returncode, txt(r.stderr)))
    j = json.loads(r.stdout)
    check(j["stats"]["laps"] == 7 and j["ring"]["fields"]["reader_laps"] == 7,
          "a reader lapped by 7 records: stats %r, fields %r" % (j["stats"], j["ring"]["fields"]))
    r = run([SHMDUMP, "show", nm])
    check(re.search(r"(?m)^  laps +7$", txt(r.stdout)), "text show laps:\n%s" % txt(r.stdout))


# Every field of the immutable header, set to an impossible value in turn.
def header_corruptions(size):
    c = [
        ("magic", 0, "<Q", 0x1122334455667788),
        ("layout_version", 8, "<I", 99),
        ("kind", 12, "<I", 77),
        ("flags", 16, "<I", 0x0000ff00),
        ("hdr_size", 20, "<I", 8192),
        ("total_size", 24, "<Q", size + 4096),
        ("created_ns", 32, "<Q", 0),
        ("creator_pid", 40, "<i", -5),
        ("max_parts", 44, "<I", 49),
        ("parts_off", 48, "<Q", 2048),
        ("ctrl_off", 56, "<Q", 4097),
        ("ctrl_size", 64, "<Q", 1 << 50),
        ("data_off", 72, "<Q", 12345),
        ("data_size", 80, "<Q", 1 << 50),
        ("geo[0]", 88, "<Q", 3000),
        ("geo[1]", 96, "<Q", 0),
        ("geo[2]", 104, "<Q", 3),
    ]
    c += [("geo[%d]" % i, 88 + 8 * i, "<Q", 1) for i in range(3, 8)]
    c += [("name", 152, "64s", b"A" * 64)]
    c += [("reserved[%d]" % i, 216 + 8 * i, "<Q", 1) for i in range(4)]
    # plausible values that are still wrong: the audit's cases
    c += [("data_size", 80, "<Q", 32768),   # geo[0] (65536) fills the file: data_size is wrong
          ("geo[0]", 88, "<Q", 32768),      # data_size fills the file: the capacity is wrong
          ("max_parts", 44, "<I", 3)]       # SPSC has exactly two slots
    c += [("checksum", 248, "<Q", 0x0123456789abcdef)]
    # the mutable parts: statistics spare words, the reserved area, the participant table
    # (slots 0 and 1 are LEFT in a detached ring) and the SPSC control region (ctrl at 4096)
    c += [("stats.fast_spare[0]", 256 + 16, "<Q", 1),
          ("stats.slow_spare[8]", 384 + 56 + 64, "<Q", 1),
          ("pad[0]", 512, "<B", 1),
          ("pad[511]", 1023, "<B", 0x80),
          ("parts[0].state", 1024, "<I", 9),
          ("parts[1].role", 1024 + 64 + 4, "<I", 42),
          ("parts[0].pid", 1024 + 8, "<i", 0),
          ("parts[0].gen", 1024 + 12, "<I", 0),
          ("parts[0].start_time", 1024 + 16, "<Q", 1 << 63),
          ("parts[0].joined_ns", 1024 + 24, "<Q", 0),
          ("parts[1].joined_ns", 1024 + 64 + 24, "<Q", 1 << 63),
          ("spsc.head", 4096 + 128, "<Q", 5),
          ("spsc.prod_closed", 4096 + 256, "<I", 7),
          # records of 100 bytes take 112; two consumed: the first pending is at 224
          ("spsc.record", 8192 + 224, "<Q", 0xdead)]
    return c


def t_dump_check_corrupt():
    nm = name("check")
    segtool(nm, mode="detach")
    tmp = tempfile.mkdtemp(prefix="shmdump-test-")
    try:
        orig = os.path.join(tmp, "orig.seg")
        shutil.copyfile("/dev/shm/" + nm, orig)
        size = os.path.getsize(orig)
        r = run([SHMDUMP, "check", orig])
        check(r.returncode == 0, "pristine copy: exit %d\n%s" % (r.returncode, txt(r.stdout)))
        data = open(orig, "rb").read()
        failures = []
        cases = 0
        for field, off, fmt, val in header_corruptions(size):
            # a field of the immutable header is damaged twice: as is (the checksum
            # problem rides along) and with the checksum recomputed over the damage, so
            # that the field's own check is what must catch it
            for rehash in ((False, True) if off < 248 else (False,)):
                what = field + (" (checksum recomputed)" if rehash else "")
                b = bytearray(data)
                struct.pack_into(fmt, b, off, val)
                path = os.path.join(tmp, "bad.seg")
                with open(path, "wb") as f:
                    f.write(b)
                if rehash:
                    rr = run([SEGTOOL, "rehash", path])
                    check(rr.returncode == 0, "segtool rehash: %s" % txt(rr.stderr))
                cases += 1
                r = run([SHMDUMP, "check", path])
                lines = txt(r.stdout).splitlines()
                named = any(l.startswith(field + " = ") for l in lines)
                if r.returncode != 1 or not named:
                    failures.append("%s: exit %d, output %r" % (what, r.returncode, lines))
                if rehash and any(l.startswith("checksum = ") for l in lines):
                    failures.append("%s: checksum still reported: %r" % (what, lines))
                rj = run([SHMDUMP, "check", path, "--json"])
                try:
                    j = json.loads(rj.stdout)
                    if rj.returncode != 1 or j["consistent"] or \
                            field not in [pr["field"] for pr in j["problems"]]:
                        failures.append("%s --json: exit %d, %r" % (what, rj.returncode, j))
                except ValueError:
                    failures.append("%s --json: not JSON: %r" % (what, rj.stdout))
        check(not failures, "corruptions not reported as wanted:\n" + "\n".join(failures))
        print("%d damaged copies, each reported with the field named" % cases)
    finally:
        shutil.rmtree(tmp)


def t_dump_bad_input():
    tmp = tempfile.mkdtemp(prefix="shmdump-test-")
    try:
        nm = name("bad")
        segtool(nm, mode="detach")
        seg = open("/dev/shm/" + nm, "rb").read()
        files = {
            "empty": b"",
            "tiny": b"x",
            "truncated-100": seg[:100],
            "truncated-4000": seg[:4000],
            "header-only": seg[:4096],
            "garbage": bytes((i * 7919 + 13) & 0xff for i in range(8192)),
            "zeros": bytes(8192),
            "wrong-version": seg[:8] + struct.pack("<I", 2) + seg[12:],
        }
        for label, content in files.items():
            path = os.path.join(tmp, label)
            with open(path, "wb") as f:
                f.write(content)
            for cmd in (["show"], ["show", "--json"], ["watch", "--count", "1"]):
                r = run([SHMDUMP] + cmd + [path])
                line = one_line_error(r, "%s %s" % (" ".join(cmd), label))
                check(path in line, "%s: the line should name the file: %r" % (label, line))
            # check's verdict is on stdout; a file that is not a segment at all is bad
            # input and also gets one line on stderr. header-only is a segment (its
            # header is whole) that is corrupt: total_size says more than the file holds
            for cmd in (["check"], ["check", "--json"]):
                what = "%s %s" % (" ".join(cmd), label)
                r = run([SHMDUMP] + cmd + [path])
                check(r.returncode == 1, "%s: exit %d" % (what, r.returncode))
                out = txt(r.stdout)
                check(len(out.splitlines()) >= 1, "%s: no problem on stdout" % what)
                if label == "header-only":
                    check("total_size" in out and not r.stderr,
                          "%s: want total_size on stdout only: %r %r" % (what, out, r.stderr))
                    continue
                line = one_line_error(r, what)
                check(path in line, "%s: the line should name the file: %r" % (what, line))
        os.unlink("/dev/shm/" + nm)
        for args in (["show", "shmring-no-such-segment-%d" % os.getpid()],
                     ["check", "/nonexistent/dir/file"],
                     ["show", tmp],            # a directory
                     ["show", "/dev/null"]):   # not a regular file
            one_line_error(run([SHMDUMP] + args), " ".join(args))
        for args in (["frobnicate"], ["show"], ["check"], ["show", "a", "b"],
                     ["show", "x", "--records", "-1"], ["list", "--bogus"],
                     ["clean", "--json"], ["watch", "x", "--interval", "abc"],
                     ["list", "--records", "3"],
                     # options given at their default value are still misplaced
                     ["list", "--interval", "1"], ["check", "x", "--records", "0"]):
            r = run([SHMDUMP] + args)
            check(r.returncode == 2, "usage error %r: exit %d" % (args, r.returncode))
            one_line_error(r, " ".join(args))
        # output that cannot be written is a failure, not a silent success
        segtool(nm, mode="detach")
        # (watch without --count would run for ever into it)
        for args in (["list"], ["list", "--json"], ["show", nm], ["show", nm, "--json"],
                     ["watch", nm, "--interval", "0.01"]):
            with open("/dev/full", "wb") as full:
                r = run([SHMDUMP] + args, stdout=full, timeout=60)
            line = one_line_error(r, "%s > /dev/full" % " ".join(args))
            check("standard output" in line, "%s > /dev/full: %r" % (" ".join(args), line))
        # a name longer than the library makes (planted by hand) that list shows can
        # be shown by that name
        long_nm = "shmring-tooltest-long-%d-" % os.getpid() + "L" * 70
        os.rename("/dev/shm/" + nm, "/dev/shm/" + long_nm)
        try:
            r = run([SHMDUMP, "show", long_nm])
            check(r.returncode == 0, "show of a %d-byte name: exit %d %r"
                  % (len(long_nm), r.returncode, txt(r.stderr)))
        finally:
            os.unlink("/dev/shm/" + long_nm)
    finally:
        shutil.rmtree(tmp)


def t_dump_clean():
    live = name("clean-live")
    dead = name("clean-dead")
    stale = name("clean-stale")
    pat = "shmring-tooltest-clean-*-%d-*" % os.getpid()
    p_live = segtool(live)
    p_dead = segtool(dead)
    segtool(stale, mode="detach")  # everyone left cleanly: stale too
    p_dead.send_signal(signal.SIGKILL)
    p_dead.wait()
    try:
        r = run([SHMDUMP, "clean", pat, "--dry-run"])
        check(r.returncode == 0, "clean --dry-run exit %d: %s" % (r.returncode, txt(r.stderr)))
        out = txt(r.stdout)
        check("would remove " + dead in out and "would remove " + stale in out and live not in out,
              "dry run output: %r" % out)
        check(os.path.exists("/dev/shm/" + dead), "dry run removed a segment")
        r = run([SHMDUMP, "clean", pat])
        check(r.returncode == 0, "clean exit %d: %s" % (r.returncode, txt(r.stderr)))
        out = txt(r.stdout)
        check("removed " + dead in out and "removed " + stale in out, "clean output: %r" % out)
        check(not os.path.exists("/dev/shm/" + dead), "dead creator's segment still there")
        check(not os.path.exists("/dev/shm/" + stale), "stale segment still there")
        check(os.path.exists("/dev/shm/" + live), "clean removed a live segment")
    finally:
        release(p_live)
    # broadcast: the writer killed while a reader is attached (readers are not in the
    # participant table; the reader lock keeps the segment), then the reader killed too
    bc = name("clean-bcast")
    p_w = segtool(bc, cap=4, records=3, length=100, consume=0, kind="bcast")
    p_r = segtool(bc, cap=4, records=0, length=100, consume=0, kind="bcast", mode="reader")
    p_w.kill()
    p_w.wait()
    r = run([SHMDUMP, "clean", bc])
    check(r.returncode == 0 and bc not in txt(r.stdout),
          "clean with a live bcast reader: exit %d, %r" % (r.returncode, txt(r.stdout)))
    check(os.path.exists("/dev/shm/" + bc), "clean removed a bcast segment with a live reader")
    p_r.kill()
    p_r.wait()
    r = run([SHMDUMP, "clean", bc])
    check(r.returncode == 0 and "removed " + bc in txt(r.stdout),
          "clean after the bcast reader died: exit %d, %r" % (r.returncode, txt(r.stdout)))
    check(not os.path.exists("/dev/shm/" + bc), "stale bcast segment still there")
    # a segment re-created under the stale one's name between clean's look and its
    # removal (the shim does it at that instant) is someone's new segment: kept
    shim = os.environ.get("RENAMESHIM")
    if shim:
        again = name("clean-again")
        segtool(again, mode="detach")
        before = os.stat("/dev/shm/" + again).st_ino
        env = dict(os.environ, LD_PRELOAD=shim, SHIM_REPLACE="/dev/shm/" + again)
        # an ASan build of shmdump wants its runtime first; the shim only wraps rename,
        # unlink and shm_unlink, which it does not intercept
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
        r = subprocess.run([SHMDUMP, "clean", again], env=env, capture_output=True, timeout=60)
        check(r.returncode == 0 and "kept " + again in txt(r.stdout),
              "clean of a re-created segment: exit %d, %r %r"
              % (r.returncode, txt(r.stdout), txt(r.stderr)))
        check(os.path.exists("/dev/shm/" + again), "clean removed the re-created segment")
        check(os.stat("/dev/shm/" + again).st_ino != before, "the shim did not re-create it")
        check(not [f for f in os.listdir("/dev/shm")
                   if f.startswith(".shmdump-clean-") and f.endswith(again)],
              "clean left its temporary name behind")
    # a stale segment under a name too long to move aside (not one the library makes)
    longn = "shmring-tooltest-cleanlong-%d-" % os.getpid() + "L" * 220
    segtool(name("clean-long"), mode="detach")
    os.rename("/dev/shm/" + _made[-1], "/dev/shm/" + longn)
    try:
        r = run([SHMDUMP, "clean", longn])
        check(r.returncode == 0 and "removed" in txt(r.stdout) and
              not os.path.exists("/dev/shm/" + longn),
              "clean of a %d-byte name: exit %d, %r %r" % (len(longn), r.returncode,
                                                        txt(r.stdout), txt(r.stderr)))
    finally:
        if os.path.exists("/dev/shm/" + longn):
            os.unlink("/dev/shm/" + longn)


def t_dump_out_of_fds():
    """Out of file descriptors, list and clean --dry-run say so (one line, exit 1): they
    never pass over a segment they could not open as if it were not there, and never
    report an empty /dev/shm with exit 0. Every descriptor limit from one the program
    cannot even start under up to one that is enough is tried: each run either shows
    all the test's segments or fails with the message."""
    segs = [name("nofile-a"), name("nofile-b")]
    for nm in segs:
        segtool(nm, mode="detach")
    junk = name("nofile-junk")  # not a segment: never shown, under any limit
    with open("/dev/shm/" + junk, "wb") as f:
        f.write(b"not a segment" * 100)
    pat = "shmring-tooltest-nofile-*-%d-*" % os.getpid()
    cmds = (["list", pat], ["list", pat, "--json"], ["clean", pat, "--dry-run"])

    def limited(n):
        # after fork, before exec; the test's own descriptors are closed after it
        return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    refused = []   # (limit, command, line): the failure this test is about, seen
    enough = None  # the first limit under which every command showed every segment
    for n in range(3, 65):
        all_ok = True
        for args in cmds:
            what = "shmdump %s with at most %d descriptors" % (" ".join(args), n)
            r = run([SHMDUMP] + args, preexec_fn=limited(n), timeout=60)
            err = txt(r.stderr)
            if r.returncode == 127 and "error while loading shared libraries" in err:
                all_ok = False  # the dynamic loader could not start it: not shmdump's run
                continue
            out = txt(r.stdout)
            if r.returncode == 0:
                if "--json" in args:
                    shown = [e["segment"] for e in json.loads(out)]
                elif args[0] == "list":
                    shown = [l.split()[0] for l in out.splitlines()[1:]]
                else:
                    shown = re.findall(r"(?m)^would remove (\S+) ", out)
                check(sorted(shown) == sorted(segs) and not err,
                      "%s: exit 0 but showed %r, want %r (stderr %r)"
                      % (what, shown, sorted(segs), err))
                continue
            all_ok = False
            line = one_line_error(r, what)
            check(r.returncode == 1 and "Too many open files" in line,
                  "%s: want exit 1 and 'Too many open files': exit %d, %r"
                  % (what, r.returncode, line))
            check(any(x in line for x in segs + [junk, "/dev/shm"]),
                  "%s: the line should name what could not be opened: %r" % (what, line))
            if "--json" in args and out.strip():
                json.loads(out)  # what was written before the failure is still JSON
            refused.append((n, " ".join(args[::2]), line))
        if all_ok:
            enough = n
            break
    check(enough is not None, "no descriptor limit up to 64 was enough to list 2 segments")
    check(refused, "no limit below %d made shmdump run out of descriptors: the failure "
          "was never exercised" % enough)
    print("limits tried 3..%d; refused with a message: %s" % (enough, refused))


def t_dump_clean_held_open():
    """A segment with no live participant that a process holds open (a creator that
    forks its workers) is in use: ok, kept by clean; once that process is gone, stale."""
    nm = name("held")
    p = segtool(nm, mode="open")
    try:
        r = run([SHMDUMP, "list", nm, "--json"])
        rows = json.loads(r.stdout.decode())
        check(len(rows) == 1 and rows[0]["state"] == "ok" and rows[0]["held_open"] is True
              and rows[0]["producers"]["live"] == 0, "list of a held segment: %r" % rows)
        r = run([SHMDUMP, "show", nm])
        check("held open by a process" in txt(r.stdout), "show: %r" % txt(r.stdout)[:300])
        r = run([SHMDUMP, "clean", nm])
        check(r.returncode == 0 and "removed" not in txt(r.stdout)
              and os.path.exists("/dev/shm/" + nm), "clean removed a held segment: %r"
              % txt(r.stdout))
    finally:
        release(p)
    r = run([SHMDUMP, "clean", nm])
    check(r.returncode == 0 and "removed " + nm in txt(r.stdout),
          "clean after the holder left: exit %d, %r" % (r.returncode, txt(r.stdout)))


def t_dump_clean_killed():
    """A clean killed while a name was moved aside: the next clean puts it back."""
    live = name("cleank-live")
    stale = name("cleank-stale")
    busy = name("cleank-busy")
    taken = name("cleank-taken")
    pat = "shmring-tooltest-cleank-*-%d-*" % os.getpid()
    p_live = segtool(live)
    for nm in (stale, busy, taken):
        segtool(nm, mode="detach")
    t = subprocess.Popen(["true"])
    t.wait()
    gone = t.pid  # a clean that was killed

    def aside(nm, pid):
        return "/dev/shm/.shmdump-clean-%d-%s" % (pid, nm)

    os.rename("/dev/shm/" + live, aside(live, gone))
    # pid 1 is alive, but not the clean that made this: a clean in another pid
    # namespace (a container sharing /dev/shm), killed. The lock is what counts
    os.rename("/dev/shm/" + stale, aside(stale, 1))
    os.rename("/dev/shm/" + busy, aside(busy, os.getpid()))  # a clean still running:
    running = open(aside(busy, os.getpid()), "rb")           # it holds the file locked
    fcntl.flock(running, fcntl.LOCK_EX)
    shutil.copy("/dev/shm/" + taken, aside(taken, gone))  # its name was taken again
    plain = name("cleank-plain")  # not a segment: a file that took a name meanwhile
    with open(aside(plain, gone), "w") as f:
        f.write("someone's file\n")
    try:
        r = run([SHMDUMP, "list", pat])
        err = txt(r.stderr)
        check(r.returncode == 0 and aside(live, gone) in err and aside(stale, 1) in err
              and busy not in err, "list of moved-aside names: exit %d, %r" % (r.returncode, err))
        r = run([SHMDUMP, "clean", pat, "--dry-run"])
        out = txt(r.stdout)
        check("would put back " + live in out and "would put back " + stale in out
              and busy not in out, "clean --dry-run: %r" % out)
        check("would remove " + stale in out and "would remove " + live not in out,
              "clean --dry-run, what comes after the put-back: %r" % out)
        # the dry run says what the real one will: the taken name cannot go back
        check(r.returncode == 1 and "would not put it back: the name is taken" in txt(r.stderr),
              "clean --dry-run with a name taken: exit %d, %r" % (r.returncode, txt(r.stderr)))
        check(os.path.exists(aside(live, gone)), "the dry run moved a file")
        r = run([SHMDUMP, "clean", pat])
        out, err = txt(r.stdout), txt(r.stderr)
        check(r.returncode == 1, "clean with a name taken: exit %d (want 1)" % r.returncode)
        check("put back " + live in out and "put back " + stale in out
              and "removed " + stale in out and live + " (stale" not in out,
              "clean output: %r" % out)
        check(os.path.exists("/dev/shm/" + live), "the live segment did not get its name back")
        check(not os.path.exists("/dev/shm/" + stale), "the stale segment was not removed")
        check(os.path.exists(aside(busy, os.getpid())), "clean took a running clean's file")
        check("the name is taken" in err and os.path.exists(aside(taken, gone)),
              "a file whose name was taken: %r" % err)
        check(os.path.exists("/dev/shm/" + plain) and not os.path.exists(aside(plain, gone)),
              "a file that is not a segment was not put back")
        # a file that has clean's temporary name already (anyone may make one) is not
        # replaced: the shell makes it under its own pid, then becomes shmdump
        again = name("cleank-again")
        segtool(again, mode="detach")
        r = run(["sh", "-c", 'echo mine > /dev/shm/.shmdump-clean-$$-"$1"; exec "$0" clean "$1"',
                 SHMDUMP, again])
        mine = [f for f in os.listdir("/dev/shm") if f.startswith(".shmdump-clean-")
                and f.endswith("-" + again)]
        for f in mine:
            with open("/dev/shm/" + f) as fh:
                check(fh.read() == "mine\n", "clean wrote over a file named like its temporary one")
            os.unlink("/dev/shm/" + f)
        check(len(mine) == 1 and r.returncode == 1 and os.path.exists("/dev/shm/" + again),
              "clean beside a file with its temporary name: exit %d, %r, %r"
              % (r.returncode, mine, txt(r.stderr)))
    finally:
        running.close()
        release(p_live)
        for f in (aside(live, gone), aside(stale, 1), aside(busy, os.getpid()),
                  aside(taken, gone), aside(plain, gone)):
            if os.path.exists(f):
                os.unlink(f)


def shim_env(**kw):
    env = dict(os.environ, LD_PRELOAD=os.environ["RENAMESHIM"], **kw)
    # an ASan build of shmdump wants its runtime first; the shim only wraps rename,
    # unlink and shm_unlink, which it does not intercept
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
    return env


def paused_clean(nm, on_pause):
    """Run `shmdump clean nm` with the shim stopping it before each rename or unlink of
    the name (or of clean's temporary name for it): on_pause(call, path) runs while it
    waits, then it goes on. Returns (the completed run, [(call, path), ...])."""
    r1, w1 = os.pipe()  # shim -> test
    r2, w2 = os.pipe()  # test -> shim
    env = shim_env(SHIM_PAUSE_NAME=nm, SHIM_PAUSE_W=str(w1), SHIM_PAUSE_R=str(r2))
    p = subprocess.Popen([SHMDUMP, "clean", nm], env=env, pass_fds=(w1, r2),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _procs.append(p)
    os.close(w1)
    os.close(r2)
    steps = []
    try:
        with os.fdopen(r1, "rb") as f:
            for line in f:  # EOF: clean has exited
                call, path = txt(line).rstrip("\n").split(" ", 1)
                steps.append((call, path))
                on_pause(call, path)
                os.write(w2, b"\n")
    finally:
        os.close(w2)
    out, err = p.communicate(timeout=60)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err), steps


def try_create(nm, kind="spsc", mode="hold"):
    """segtool creating nm (or, mode reader, attaching to it): (process, inode) once it
    is ready and holds the channel, or (None, its stderr) if it failed."""
    args = [SEGTOOL, kind, nm, "4096", "0", "100", "0", mode]
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    _procs.append(p)
    if p.stdout.readline() == b"ready\n":
        return p, os.stat("/dev/shm/" + nm).st_ino  # nothing else acts on nm now
    p.stdin.close()
    p.wait(timeout=60)
    return None, txt(p.stderr.read())


def name_ino(nm):
    try:
        return os.stat("/dev/shm/" + nm).st_ino
    except FileNotFoundError:
        return None


def abstract_sockets():
    """Whether this system has abstract Unix sockets (the creators' turns)."""
    import socket
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError:
        return False
    try:
        s.bind(b"\0shmring-tooltest-%d" % os.getpid())
        return True
    except OSError:
        return False
    finally:
        s.close()


def t_dump_clean_holds_the_creators_turn():
    """While clean looks at a stale segment and removes it, it holds the turn that the
    name's creators take: an application that restarts in that window (removes the
    name, creates its channel again) is refused with -EEXIST, rather than see its new,
    live channel moved aside by clean (no name for a while, and lost for good if yet
    another creator takes the free name meanwhile). And a process that attaches to the
    stale segment in that window keeps it: clean looks again once the name is moved
    aside, and puts it back. The shim stops clean at each step it takes on the name."""
    if not os.environ.get("RENAMESHIM"):
        print("no RENAMESHIM: cannot stop clean at its steps")
        return SKIP
    if not abstract_sockets():
        print("no abstract Unix sockets: creators take no turns here")
        return SKIP
    nm = name("turn")
    segtool(nm, mode="detach")  # stale
    made, refused, wrong, steps_seen = [], [], [], []

    def on_pause(call, path):
        for p, ino in made:  # the channels created so far still have the name
            if name_ino(nm) != ino:
                wrong.append("at clean's %s of %s, the live channel made meanwhile (inode "
                             "%d) %s" % (call, path, ino, "has no name" if name_ino(nm) is None
                                         else "is not what the name leads to"))
        if len(steps_seen) == 0:
            # clean judged the segment stale and is about to remove it: the application
            # restarts now (removes the stale name, creates its channel again)
            os.unlink("/dev/shm/" + nm)
        if len(made) < 2 and name_ino(nm) is None:  # a creator finds the name free
            p, what = try_create(nm)
            if p:
                made.append((p, what))
            else:
                refused.append(what)
        steps_seen.append(call)

    try:
        r, steps = paused_clean(nm, on_pause)
        for p, ino in made:
            if name_ino(nm) != ino:
                wrong.append("after clean, the channel made while it was at work (inode %d) "
                             "%s" % (ino, "has no name" if name_ino(nm) is None
                                     else "is not what the name leads to"))
        check(steps, "clean took no step on the stale segment %s: %r" % (nm, txt(r.stdout)))
        check(not wrong, "clean moved a channel created while it held the name: %s "
              "(clean's steps %r, exit %d, %r %r)" % ("; ".join(wrong), steps, r.returncode,
                                                     txt(r.stdout), txt(r.stderr)))
        check(not made and len(refused) == 1 and "already exists" in refused[0],
              "a create while clean held the name: want it refused (-EEXIST), got %d made, "
              "refused %r" % (len(made), refused))
        check(r.returncode == 0 and name_ino(nm) is None,
              "clean: exit %d, %r %r" % (r.returncode, txt(r.stdout), txt(r.stderr)))
        check(not [f for f in os.listdir("/dev/shm") if f.startswith(".shmdump-clean-")
                   and f.endswith("-" + nm)], "clean left its temporary name behind")
        # the turn is given back: the application's next create works
        p, ino = try_create(nm)
        check(p is not None, "create after clean: %s" % ino)
        release(p)
    finally:
        for p, _ in made:
            release(p)
        for f in os.listdir("/dev/shm"):
            if f.startswith(".shmdump-clean-") and f.endswith("-" + nm):
                os.unlink("/dev/shm/" + f)
    # a name whose turn another process holds (a creator at work on it) is skipped
    held = name("turn-held")
    segtool(held, mode="detach")
    t = subprocess.Popen([SEGTOOL, "turn", held], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    _procs.append(t)
    check(t.stdout.readline() == b"ready\n", "segtool turn did not start")
    try:
        r = run([SHMDUMP, "clean", held])
        check(r.returncode == 0 and os.path.exists("/dev/shm/" + held) and
              "kept %s: a process is creating a segment under that name" % held in txt(r.stdout),
              "clean of a name whose turn is held: exit %d, %r %r"
              % (r.returncode, txt(r.stdout), txt(r.stderr)))
    finally:
        release(t)
    r = run([SHMDUMP, "clean", held])
    check(r.returncode == 0 and "removed " + held in txt(r.stdout),
          "clean once the turn was given back: exit %d, %r" % (r.returncode, txt(r.stdout)))
    # a reader attaches to the stale broadcast segment just before clean removes it
    bc = name("turn-attach")
    segtool(bc, cap=4, records=3, length=100, consume=0, kind="bcast", mode="detach")
    readers = []

    def attach(call, path):
        if not readers:
            readers.append(try_create(bc, kind="bcast", mode="reader"))

    r, steps = paused_clean(bc, attach)
    p, ino = readers[0] if readers else (None, "clean took no step on it")
    try:
        check(p is not None, "the reader could not attach: %s" % ino)
        check(name_ino(bc) == ino, "clean removed the name of a segment a reader attached to "
              "before it was removed (clean's steps %r, exit %d, %r)"
              % (steps, r.returncode, txt(r.stdout)))
        check(r.returncode == 0 and "kept %s: a participant attached meanwhile" % bc
              in txt(r.stdout), "clean: exit %d, %r %r" % (r.returncode, txt(r.stdout),
                                                            txt(r.stderr)))
    finally:
        if p:
            release(p)


def t_dump_clean_races_creators():
    """An application restarting over and over (segtool churn: remove the name, create
    the channel, hold it while checking that the name leads to it, close it, leaving a
    stale segment) against `shmdump clean NAME` run over and over in two loops: a channel
    the application holds is never moved aside or removed. Bounded: SHMRING_TEST_SCALE
    * 3 seconds of racing (longer only if clean removed nothing in that time)."""
    if not abstract_sockets():
        print("no abstract Unix sockets: creators take no turns here")
        return SKIP
    import threading
    nm = name("churn")
    ms = int(3000 * SCALE)
    runs, removed, failed = [0], [0], []
    lock = threading.Lock()
    outs = []
    for _ in range(5):  # until clean has removed something (the race took place)
        ch = subprocess.Popen([SEGTOOL, "churn", nm, str(ms)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        _procs.append(ch)

        def loop():
            while ch.poll() is None:
                r = run([SHMDUMP, "clean", nm], timeout=60)
                with lock:
                    runs[0] += 1
                    removed[0] += txt(r.stdout).count("removed " + nm)
                    if r.returncode != 0:
                        failed.append("exit %d: %s" % (r.returncode, txt(r.stderr).strip()))

        loops = [threading.Thread(target=loop) for _ in range(2)]
        for t in loops:
            t.start()
        out, err = ch.communicate(timeout=ms / 1000 + 120)
        for t in loops:
            t.join()
        outs.append(txt(out).strip())
        aside = [f for f in os.listdir("/dev/shm") if f.startswith(".shmdump-clean-")
                 and f.endswith("-" + nm)]
        for f in aside:
            os.unlink("/dev/shm/" + f)
        m = re.match(r"creates (\d+) eexist (\d+) checks (\d+) violations (\d+)$", outs[-1])
        check(ch.returncode == 0 and m, "segtool churn: exit %d, %r %r"
              % (ch.returncode, outs[-1], txt(err)))
        check(int(m.group(4)) == 0, "clean moved or removed a live channel: %s (%s; clean "
              "runs %d, removed %d)" % (txt(err).strip().replace("\n", "; "), outs[-1],
                                        runs[0], removed[0]))
        check(not failed, "clean failed %d times, first: %s" % (len(failed), failed[:1]))
        check(not aside, "left under clean's temporary names: %r" % aside)
        if removed[0] > 0 and int(m.group(1)) > 0:
            break
    check(removed[0] > 0, "in %d rounds clean never removed the application's stale "
          "segment: the race was not exercised (%r)" % (len(outs), outs))
    print("%s; clean runs %d, removed %d" % (" / ".join(outs), runs[0], removed[0]))


def t_dump_odd_names():
    """Names are bytes: --json gives well-formed UTF-8 names back as they are and any
    other byte as U+FFFD (valid JSON whatever the name); text output shows control
    bytes and malformed UTF-8 as '?', so a planted name cannot break a table or drive
    the terminal."""
    nm = name("caf\u00e9")
    segtool(nm, mode="detach")
    r = run([SHMDUMP, "show", nm, "--json"])
    check(r.returncode == 0, "show --json of a UTF-8 name: exit %d %s" % (r.returncode, txt(r.stderr)))
    doc = json.loads(r.stdout.decode("utf-8"))  # strict: must be valid UTF-8
    check(doc["segment"] == nm, "segment %r, want %r" % (doc["segment"], nm))
    check(doc["header"]["name"] == nm, "the header's name %r, want %r" % (doc["header"]["name"], nm))
    check(("caf\u00e9").encode() in r.stdout, "the name's bytes are not passed through")
    pre = ("shmring-tooltest-odd-%d-" % os.getpid()).encode()
    # \xc2\x9b: CSI, a C1 control; \xd8\x9c: ARABIC LETTER MARK, a bidi control
    odd = pre + b"a\nb\x1b[31m\xc2\x9b2J\xd8\x9cZ\xff\xc3"
    oddpath = b"/dev/shm/" + odd
    shutil.copyfile("/dev/shm/" + nm, oddpath)
    try:
        r = run([SHMDUMP, "show", odd, "--json"])
        check(r.returncode == 0, "show --json of an odd name: exit %d %s" % (r.returncode, txt(r.stderr)))
        doc = json.loads(r.stdout.decode("utf-8"))
        want = pre.decode() + "a\nb\x1b[31m\x9b2J\u061cZ\ufffd\ufffd"
        check(doc["segment"] == want, "segment %r, want %r" % (doc["segment"], want))
        pat = "shmring-tooltest-odd-%d-*" % os.getpid()
        r = run([SHMDUMP, "list", pat])
        rows = [l for l in r.stdout.split(b"\n") if b"tooltest-odd" in l]
        check(len(rows) == 1, "list rows for the odd name: %r" % r.stdout)
        check(pre + b"a?b?[31m?2J?Z??" in rows[0], "list row %r" % rows[0])
        check(not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", r.stdout), "control bytes in list: %r" % r.stdout)
        r = run([SHMDUMP, "show", odd])
        check(b"segment          " + pre + b"a?b?[31m?2J?Z??\n" in r.stdout, "show: %r" % r.stdout[:200])
    finally:
        os.unlink(oddpath)


def t_dump_watch():
    nm = name("watch")
    p = segtool(nm)
    try:
        r = run([SHMDUMP, "watch", nm, "--interval", "0.05", "--count", "3"])
        lines = txt(r.stdout).splitlines()
        check(r.returncode == 0 and len(lines) == 4, "watch --count 3: %r" % lines)
        check(lines[0].split()[:4] == ["TIME", "MSGS/S", "BYTES/S", "FILL"], "header %r" % lines[0])
        check(lines[2].split()[1] == "0" and lines[2].split()[-1] == "ok",
              "idle ring: 0 msgs/s, state ok: %r" % lines[2])
        # until interrupted
        w = subprocess.Popen([SHMDUMP, "watch", nm, "--interval", "0.05"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _procs.append(w)
        w.stdout.readline()
        w.stdout.readline()  # a first sample: it is running
        w.send_signal(signal.SIGINT)
        rc = w.wait(timeout=30)
        check(rc == 0, "watch after SIGINT: exit %d" % rc)
    finally:
        release(p)


def t_dump_mutations():
    """Random damage to a segment copy: check answers 0 or 1, never crashes."""
    import random
    nm = name("mut")
    segtool(nm, records=40, length=300, consume=7, mode="detach")
    data = open("/dev/shm/" + nm, "rb").read()
    rng = random.Random(1234)
    tmp = tempfile.mkdtemp(prefix="shmdump-test-")
    try:
        path = os.path.join(tmp, "m.seg")
        for i in range(max(20, int(200 * SCALE))):
            b = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                # mostly the header page and ring control, sometimes anywhere
                off = rng.randrange(0, 8192 + 1024) if rng.random() < 0.8 else rng.randrange(len(b))
                b[off] = rng.randrange(256)
            if rng.random() < 0.1:
                b = b[:rng.randrange(len(b))]
            with open(path, "wb") as f:
                f.write(b)
            for cmd in (["check"], ["show", "--records", "50"]):
                r = run([SHMDUMP] + cmd + [path])
                check(r.returncode in (0, 1), "mutation %d %s: exit %d\n%s" %
                      (i, cmd[0], r.returncode, txt(r.stderr)))
    finally:
        shutil.rmtree(tmp)


# ---------------------------------------------------------------------------------
# shmcat

def cat_pipeline(nm, infile, outfile, writer_args=(), reader_args=()):
    with open(outfile, "wb") as out:
        rd = subprocess.Popen([SHMCAT, "-r", nm, "--wait", "30"] + list(reader_args),
                              stdout=out, stderr=subprocess.PIPE)
        _procs.append(rd)
        with open(infile, "rb") as inp:
            wr = run([SHMCAT, "-w", nm, "--create"] + list(writer_args), stdin=inp, timeout=300)
        rerr = rd.communicate(timeout=300)[1]
    check(wr.returncode == 0, "writer exit %d: %s" % (wr.returncode, txt(wr.stderr)))
    check(rd.returncode == 0, "reader exit %d: %s" % (rd.returncode, txt(rerr)))


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


def t_cat_roundtrip_random():
    size = max(1 << 20, int((100 << 20) * SCALE))
    tmp = tempfile.mkdtemp(prefix="shmcat-test-")
    try:
        src = os.path.join(tmp, "in")
        with open(src, "wb") as f:
            left = size
            while left:
                n = min(left, 8 << 20)
                f.write(os.urandom(n))
                left -= n
        # odd sizes: records that never line up with the ring or the 64 KiB default
        f = open(src, "ab")
        f.write(os.urandom(12345))
        f.close()
        dst = os.path.join(tmp, "out")
        nm = name("rt")
        cat_pipeline(nm, src, dst, ["--unlink"])
        check(os.path.getsize(dst) == os.path.getsize(src), "size differs")
        check(sha(src) == sha(dst), "content differs")
        check(not os.path.exists("/dev/shm/" + nm), "--unlink left the segment behind")
        # small ring, odd small records: many wrap-arounds and padding records
        small = os.path.join(tmp, "small")
        with open(small, "wb") as f:
            f.write(os.urandom(max(1 << 20, int((8 << 20) * SCALE)) + 777))
        nm = name("rt-small")
        cat_pipeline(nm, small, dst, ["--size", "64K", "--record-size", "1000"], ["--unlink"])
        check(sha(small) == sha(dst), "content differs (small ring)")
    finally:
        shutil.rmtree(tmp)


def part_slot(nm, i):
    """Participant slot i of segment nm: (state, gen), or None while there is no file."""
    try:
        with open("/dev/shm/" + nm, "rb") as f:
            f.seek(1024 + 64 * i)
            state, _, _, gen = struct.unpack("<IIiI", f.read(16))
        return state, gen
    except (FileNotFoundError, struct.error):
        return None


def wait_slot(nm, i, want, proc):
    """Synchronise on a participant slot: until slot i of nm reads want (state, gen)."""
    deadline = time.monotonic() + 60
    while part_slot(nm, i) != want:
        check(proc.poll() is None and time.monotonic() < deadline,
              "slot %d of %s never became %r: %r" % (i, nm, want, part_slot(nm, i)))
        os.sched_yield()


def unlink_writer_waits_for_reader(nm, data, what):
    """`shmcat -w nm --unlink` into an existing ring writes data and keeps the name until
    a new reader has come: that reader gets data, then the name is gone."""
    gen = part_slot(nm, 0)[1]
    w = subprocess.Popen([SHMCAT, "-w", nm, "--unlink"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _procs.append(w)
    # the reader must find this writer attached, not the previous one's end of stream
    wait_slot(nm, 0, (1, gen + 1), w)
    w.stdin.write(data)
    w.stdin.close()
    rd = run([SHMCAT, "-r", nm, "--wait", "30"])
    check(rd.returncode == 0 and rd.stdout == data,
          "reader %s: exit %d, %r %r" % (what, rd.returncode, rd.stdout, txt(rd.stderr)))
    check(w.wait(timeout=60) == 0, "writer (reader %s) exit %d" % (what, w.returncode))
    check(not os.path.exists("/dev/shm/" + nm), "the name stayed after the reader came")


def t_cat_roundtrip_empty():
    tmp = tempfile.mkdtemp(prefix="shmcat-test-")
    try:
        src = os.path.join(tmp, "in")
        open(src, "wb").close()
        dst = os.path.join(tmp, "out")
        nm = name("empty")
        cat_pipeline(nm, src, dst, ["--unlink"])
        check(os.path.getsize(dst) == 0, "empty input gave %d bytes" % os.path.getsize(dst))
        # and a reader that comes after the writer has already closed
        wr = run([SHMCAT, "-w", nm, "--create"], stdin=subprocess.DEVNULL)
        check(wr.returncode == 0, "writer exit %d" % wr.returncode)
        rd = run([SHMCAT, "-r", nm, "--unlink"])
        check(rd.returncode == 0 and rd.stdout == b"", "late reader: exit %d, %d bytes" %
              (rd.returncode, len(rd.stdout)))
        # a second writer with --unlink into a ring an earlier reader has left: the name
        # stays until a new reader comes (that one reader's slot, left, is no reader)
        nm2 = name("again")
        wr = run([SHMCAT, "-w", nm2, "--create", "--size", "64K"], input=b"first")
        check(wr.returncode == 0, "first writer exit %d" % wr.returncode)
        rd = run([SHMCAT, "-r", nm2])
        check(rd.returncode == 0 and rd.stdout == b"first", "first reader: %r" % rd.stdout)
        unlink_writer_waits_for_reader(nm2, b"second", "after one that left")
        # and a reader that was killed (its slot stays ACTIVE, dead) is no reader either
        nm3 = name("again-dead")

        # a writer that keeps the ring open, so that its reader blocks and can be killed
        w0 = subprocess.Popen([SHMCAT, "-w", nm3, "--create", "--size", "64K"],
                              stdin=subprocess.PIPE)
        _procs.append(w0)
        wait_slot(nm3, 0, (1, 1), w0)
        c_gen = part_slot(nm3, 1)[1]
        rd = subprocess.Popen([SHMCAT, "-r", nm3], stdout=subprocess.PIPE)
        _procs.append(rd)
        wait_slot(nm3, 1, (1, c_gen + 1), rd)
        rd.kill()
        rd.wait()
        w0.stdin.close()
        check(w0.wait(timeout=60) == 0, "the first writer exit %d" % w0.returncode)
        unlink_writer_waits_for_reader(nm3, b"third", "after a killed one")
    finally:
        shutil.rmtree(tmp)


def read_exactly(f, n, proc=None):
    got = b""
    while len(got) < n:
        b = f.read(n - len(got))
        if not b and proc is not None:  # say why the reader stopped
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                err = b"(still running)"
            check(False, "reader stopped after %d of %d bytes: exit %s, %r"
                  % (len(got), n, proc.returncode, err))
        check(b, "reader stopped after %d of %d bytes" % (len(got), n))
        got += b
    return got


def t_cat_unlink_keeps_a_new_ring():
    """Writer and reader both with --unlink: the reader removes the name when it
    attaches; a new pipeline may then create a ring under that name, which the old
    writer must not remove when it gets round to its own unlink."""
    nm = name("unlink-new")
    w = subprocess.Popen([SHMCAT, "-w", nm, "--create", "--unlink"], stdin=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    _procs.append(w)
    first, second = b"first chunk\n", b"second chunk\n"
    w.stdin.write(first)
    w.stdin.flush()
    rd = subprocess.Popen([SHMCAT, "-r", nm, "--wait", "30", "--unlink"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _procs.append(rd)
    # it removed the name before it read anything
    check(read_exactly(rd.stdout, len(first), rd) == first, "first chunk")
    check(not os.path.exists("/dev/shm/" + nm), "the reader did not remove the name")
    segtool(nm, mode="detach")  # the next pipeline's ring
    ino = os.stat("/dev/shm/" + nm).st_ino
    w.stdin.write(second)
    w.stdin.close()
    check(read_exactly(rd.stdout, len(second), rd) == second, "second chunk")
    check(w.wait(timeout=60) == 0, "writer exit %d: %r" % (w.returncode, w.stderr.read()))
    check(rd.wait(timeout=60) == 0, "reader exit %d" % rd.returncode)
    check(os.path.exists("/dev/shm/" + nm) and os.stat("/dev/shm/" + nm).st_ino == ino,
          "the old writer removed the new ring's name")


def wait_caught(proc, sig):
    """Synchronise on a process's signal disposition: until it catches sig."""
    deadline = time.monotonic() + 60
    while True:
        with open("/proc/%d/status" % proc.pid) as f:
            cgt = [l for l in f if l.startswith("SigCgt:")]
        if cgt and int(cgt[0].split()[1], 16) & (1 << (sig - 1)):
            return
        check(proc.poll() is None and time.monotonic() < deadline,
              "process %d never caught signal %d" % (proc.pid, sig))
        os.sched_yield()


def t_cat_unlink_writer_interrupted():
    """A writer with --unlink interrupted before any reader came removes the name (and
    dies of the signal); the name of a ring that is not its own stays."""
    # a signal ignored here (SIGINT in a background job, SIGHUP under nohup) is ignored
    # by shmcat too, as it should be
    sigs = [s for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
            if signal.getsignal(s) != signal.SIG_IGN]
    for sig in sigs:
        nm = name("unlink-int")
        w = subprocess.Popen([SHMCAT, "-w", nm, "--create", "--unlink"], stdin=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        _procs.append(w)
        wait_caught(w, sig)  # it is ready to clean up
        w.send_signal(sig)
        check(w.wait(timeout=60) == -sig, "writer exit %d after signal %d" % (w.returncode, sig))
        check(not os.path.exists("/dev/shm/" + nm), "an interrupted writer left the ring (%d)" % sig)
    # a ring made under the name meanwhile is not the writer's: it stays
    nm = name("unlink-int-new")
    w = subprocess.Popen([SHMCAT, "-w", nm, "--create", "--unlink"], stdin=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    _procs.append(w)
    wait_caught(w, signal.SIGTERM)
    os.unlink("/dev/shm/" + nm)
    segtool(nm, mode="detach")
    w.send_signal(signal.SIGTERM)
    check(w.wait(timeout=60) == -signal.SIGTERM, "writer exit %d" % w.returncode)
    check(os.path.exists("/dev/shm/" + nm), "the interrupted writer removed another ring")


def t_cat_reader_waits_for_a_ring_being_created():
    """A file whose header has no magic yet is a ring being created: the reader waits
    for it (--wait or not) and then says so in one line, rather than 'would block'."""
    nm = name("creating")
    with open("/dev/shm/" + nm, "wb") as f:
        f.write(bytes(8192))
    r = run([SHMCAT, "-r", nm])
    line = one_line_error(r, "reader of a ring that never finishes being created")
    check("still being created" in line, "reader: %r" % line)


def t_cat_unlink_writer_waiting():
    """A writer with --unlink at the end of its input waits for a reader with its
    producer handle closed: the ring is held open (shmdump clean keeps it), and if its
    name goes before a reader came, the writer says the data is lost and stops."""
    data = b"waiting for a reader\n"
    for remove in (False, True):
        nm = name("unlink-wait")
        w = subprocess.Popen([SHMCAT, "-w", nm, "--create", "--unlink"], stdin=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        _procs.append(w)
        w.stdin.write(data)
        w.stdin.close()
        wait_slot(nm, 0, (2, 1), w)  # the producer closed: the writer waits now
        r = run([SHMDUMP, "clean", nm])
        check(r.returncode == 0 and "removed" not in txt(r.stdout)
              and os.path.exists("/dev/shm/" + nm),
              "clean removed the ring of a writer waiting for its reader: %r" % txt(r.stdout))
        if remove:
            os.unlink("/dev/shm/" + nm)
            check(w.wait(timeout=60) == 1, "writer exit %d with its name gone" % w.returncode)
            check("lost" in txt(w.stderr.read()), "the writer did not say the data is lost")
        else:
            rd = run([SHMCAT, "-r", nm])
            check(rd.returncode == 0 and rd.stdout == data, "reader: exit %d, %r"
                  % (rd.returncode, rd.stdout))
            check(w.wait(timeout=60) == 0, "writer exit %d" % w.returncode)


def t_cat_unlink_writer_interrupted_creating():
    """A writer with --unlink interrupted while its ring is being made (a large ring
    takes a moment to allocate) removes it too: the signal waits for the handler."""
    nm = name("unlink-creating")
    w = subprocess.Popen([SHMCAT, "-w", nm, "--create", "--unlink", "--size", "256M"],
                         stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    _procs.append(w)
    deadline = time.monotonic() + 60
    while not os.path.exists("/dev/shm/" + nm):  # the file is there: creation is under way
        check(w.poll() is None and time.monotonic() < deadline, "the writer made no file")
        os.sched_yield()
    w.send_signal(signal.SIGTERM)
    check(w.wait(timeout=60) == -signal.SIGTERM, "writer exit %d" % w.returncode)
    check(not os.path.exists("/dev/shm/" + nm), "a writer interrupted while creating left its ring")


def t_cat_producer_died():
    nm = name("died")
    wr = subprocess.Popen([SHMCAT, "-w", nm, "--create", "--record-size", "4096"],
                          stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    _procs.append(wr)
    rd = subprocess.Popen([SHMCAT, "-r", nm, "--wait", "30"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    _procs.append(rd)
    payload = os.urandom(300000)
    wr.stdin.write(payload)
    wr.stdin.flush()
    # everything written so far has been committed once the reader has it all
    got = read_exactly(rd.stdout, len(payload), rd)
    wr.send_signal(signal.SIGKILL)
    wr.wait()
    rest, err = rd.communicate(timeout=60)
    check(got + rest == payload, "reader output differs from what was committed")
    check(rd.returncode == 3, "reader exit %d (want 3)" % rd.returncode)
    line = one_line_error(subprocess.CompletedProcess(rd.args, rd.returncode, rest, err),
                          "reader after producer death")
    check("producer died" in line, "want 'producer died': %r" % line)
    wr.stdin.close()


def t_cat_corrupt():
    nm = name("corrupt")
    segtool(nm, records=3, length=100, consume=0, mode="detach")
    path = "/dev/shm/" + nm
    with open(path, "r+b") as f:  # the first record's header: impossible flags
        f.seek(8192)
        f.write(struct.pack("<Q", (0xabcd << 48) | 100))
    r = run([SHMCAT, "-r", nm], timeout=60)
    line = one_line_error(r, "reader of a corrupt ring")
    check("corrupt" in line, "want 'corrupt': %r" % line)
    with open(path, "r+b") as f:  # and a header that fails its checksum
        f.seek(248)
        f.write(struct.pack("<Q", 1))
    for args in (["-r", nm], ["-w", nm]):
        r = run([SHMCAT] + args, stdin=subprocess.DEVNULL, timeout=60)
        line = one_line_error(r, "shmcat %s on a bad header" % args[0])
        check("corrupt" in line, "want 'corrupt': %r" % line)
    # a sound segment of another kind is not called corrupt
    bc = name("cat-kind")
    segtool(bc, cap=4, records=10, length=100, consume=0, kind="bcast", mode="lapped")
    r = run([SHMCAT, "-r", bc], timeout=60)
    line = one_line_error(r, "reader of a bcast segment")
    check("a bcast segment, not an spsc ring" in line, "want the kind named: %r" % line)


def t_cat_corrupt_detail():
    """A ring the library refuses as corrupt is reported with the library's reason, not
    only the generic sentence (shmcat's look at the segment's kind, a second open that
    succeeds, must not wipe the detail of the failure it reports)."""
    nm = name("corrupt-detail")
    segtool(nm, records=5, length=100, consume=2, mode="detach")
    with open("/dev/shm/" + nm, "r+b") as f:  # spsc.head (ctrl at 4096, head at +128)
        f.seek(4096 + 128)
        f.write(struct.pack("<Q", 3))
    for args in (["-r", nm], ["-w", nm]):
        r = run([SHMCAT] + args, stdin=subprocess.DEVNULL, timeout=60)
        line = one_line_error(r, "shmcat %s on a ring with head 3" % args[0])
        check(r.returncode == 1 and nm in line and "corrupt" in line,
              "shmcat %s: want exit 1 and 'corrupt' with the name: %d %r"
              % (args[0], r.returncode, line))
        # the library's own words: "spsc head 3 / tail N impossible"
        check(re.search(r"\bhead 3\b.*\btail \d+", line),
              "shmcat %s: want the library's reason (head 3, tail N): %r" % (args[0], line))


def t_cat_reader_gone():
    nm = name("gone")
    # the reader's stdout closes early (like `| head`): the writer must stop, not hang
    rd = subprocess.Popen("'%s' -r '%s' --wait 30 | head -c 1000 > /dev/null" % (SHMCAT, nm),
                          shell=True)
    _procs.append(rd)
    wr = subprocess.Popen([SHMCAT, "-w", nm, "--create", "--size", "64K"],
                          stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    _procs.append(wr)
    try:
        while True:
            wr.stdin.write(os.urandom(65536))
            wr.stdin.flush()
    except BrokenPipeError:
        pass  # the writer exited: what we want
    err = wr.communicate(timeout=60)[1]
    check(wr.returncode not in (0, None) and wr.returncode > 0,
          "writer exit %r" % wr.returncode)
    check("reader" in txt(err) and len(txt(err).splitlines()) == 1, "writer said %r" % txt(err))
    rd.wait(timeout=60)


def t_cat_bad_usage():
    missing = name("missing")
    r = run([SHMCAT, "-r", missing, "--wait", "0.2"])
    line = one_line_error(r, "reader of a missing ring")
    check(missing in line, "name the ring: %r" % line)
    r = run([SHMCAT, "-w", missing], stdin=subprocess.DEVNULL)
    one_line_error(r, "writer to a missing ring without --create")
    for args in ([], ["-w", "a", "-r", "b"], ["-r", "x", "--create"], ["-w", "x", "--wait", "1"],
                 ["-w", "x", "--create", "--size", "lots"], ["-w", "x", "--size", "1M"],
                 ["-r"], ["-w", "x", "extra"], ["--bogus"],
                 ["-w", "x", "--create", "--record-size", "0"],
                 # names the library refuses: said so, not blamed on the sizes
                 ["-w", "a/b", "--create"], ["-r", "a\tb"], ["-r", "x" * 70]):
        r = run([SHMCAT] + args, stdin=subprocess.DEVNULL)
        check(r.returncode == 2, "usage %r: exit %d" % (args, r.returncode))
        line = one_line_error(r, "usage %r" % args)
        check(args[1:2] not in (["a/b"], ["a\tb"], ["x" * 70]) or "name" in line,
              "usage %r: say the name is wrong: %r" % (args, line))
    # a record size the ring cannot take: one line, exit 1, nothing left behind
    r = run([SHMCAT, "-w", missing, "--create", "--size", "4K", "--record-size", "1M"],
            stdin=subprocess.DEVNULL)
    one_line_error(r, "record size too large for the ring")
    check(not os.path.exists("/dev/shm/" + missing), "failed create left a segment")


# ---------------------------------------------------------------------------------
# ffmpeg -> shmcat -w -> ring -> shmcat -r -> ffmpeg, frame MD5s on both sides

def t_ffmpeg_framemd5():
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        print("SKIP: ffmpeg not found in PATH; install ffmpeg to run the video pipeline test")
        return SKIP
    frames = max(10, int(300 * SCALE))
    nm = name("ffmpeg")
    tmp = tempfile.mkdtemp(prefix="shmcat-ffmpeg-")
    try:
        md5_in = os.path.join(tmp, "producer.framemd5")
        md5_out = os.path.join(tmp, "consumer.framemd5")
        # one source, two outputs: raw frames into the ring and their MD5s
        src = ("'%s' -nostdin -v error -f lavfi -i testsrc2=size=1280x720:rate=30 "
               "-frames:v %d -pix_fmt nv12 -f rawvideo pipe:1 "
               "-frames:v %d -pix_fmt nv12 -f framemd5 '%s' "
               "| '%s' -w '%s' --create --size 16M"
               % (ffmpeg, frames, frames, md5_in, SHMCAT, nm))
        dst = ("'%s' -r '%s' --wait 60 --unlink | '%s' -nostdin -v error -f rawvideo "
               "-pix_fmt nv12 -s 1280x720 -r 30 -i pipe:0 -f framemd5 '%s'"
               % (SHMCAT, nm, ffmpeg, md5_out))
        opts = dict(shell=True, executable="/bin/bash", stderr=subprocess.PIPE)
        c = subprocess.Popen("set -o pipefail; " + dst, **opts)
        _procs.append(c)
        pr = subprocess.run("set -o pipefail; " + src, timeout=600, **opts)
        cerr = c.communicate(timeout=600)[1]
        check(pr.returncode == 0, "producer pipeline exit %d: %s" % (pr.returncode, txt(pr.stderr)))
        check(c.returncode == 0, "consumer pipeline exit %d: %s" % (c.returncode, txt(cerr)))

        def md5s(path):
            rows = [l for l in open(path).read().splitlines() if l and not l.startswith("#")]
            return [l.split(",")[-1].strip() for l in rows], rows
        a, ra = md5s(md5_in)
        b, rb = md5s(md5_out)
        check(len(a) == frames, "producer side: %d frames, want %d" % (len(a), frames))
        check(a == b, "frame MD5s differ:\n%s\n---\n%s" % ("\n".join(ra[:5]), "\n".join(rb[:5])))
        sizes = set(l.split(",")[-2].strip() for l in rb)
        check(sizes == {"1382400"}, "frame sizes %r, want 1280*720*1.5" % sizes)
        print("%d frames of 1280x720 NV12 crossed the ring, per-frame MD5s identical" % frames)
    finally:
        shutil.rmtree(tmp)


TESTS = {k[2:]: v for k, v in globals().items() if k.startswith("t_")}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in TESTS:
        print("usage: tooltests.py TEST\ntests: " + " ".join(sorted(TESTS)), file=sys.stderr)
        return 2
    try:
        rc = TESTS[sys.argv[1]]()
    except Fail as e:
        print("FAIL %s: %s" % (sys.argv[1], e))
        return 1
    finally:
        cleanup()
    if rc == SKIP:
        return SKIP
    print("PASS %s" % sys.argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
