"""The atheris (libFuzzer) harness: ``python fuzz/run.py TARGET [libFuzzer flags]``.

TARGET is one of ``framing``, ``syslog``, ``cef``, ``leef``, ``parse``, ``config`` (see
``fuzz/targets.py``). Before fuzzing, the generated seeds too large to commit (a 10 MB line
and the like, ``fuzz/generated.py``) run through the target once. The committed seeds in
``fuzz/corpus/`` are copied into a working corpus folder (``--work``, default
``/tmp/dsrouter-fuzz/TARGET``) that libFuzzer grows, so the committed corpus is never written.
Crashes land in the current folder as ``crash-*`` files (``-artifact_prefix=`` moves them);
run one again with ``python fuzz/run.py TARGET crash-FILE``. See fuzz/README.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

with atheris.instrument_imports(include=["dsrouter"]):
    import generated
    import targets

#: framing seeds get a control prefix: byte 0 the framing, 1 max_message, 2 the cut count, cuts
_FRAMING_PREFIXES = (
    b"\x00\x02\x00",  # auto, 64 KiB, whole
    b"\x00\x00\x03\x01\x05\x0b",  # auto, 16 bytes, chunks of 1, 5, 11
    b"\x01\x01\x01\x07",  # octet-counted, 300 bytes, chunks of 7
    b"\x02\x02\x00",  # lf, 64 KiB, whole
)


def seeds(target: str) -> list[bytes]:
    """The committed seeds that suit ``target`` (configurations for ``config``, else messages)."""
    want = ".conf" if target == "config" else ".bin"
    files = sorted(p for p in targets.CORPUS.iterdir() if p.suffix == want)
    data = [p.read_bytes() for p in files]
    if target == "framing":
        return [prefix + d for d in data for prefix in _FRAMING_PREFIXES]
    return data


def run_generated(target: str) -> None:
    """Each generated seed once, whole (framing: in 64 KiB chunks and in every mode)."""
    table = generated.GENERATED_CONFIGS if target == "config" else generated.GENERATED
    for name, make in table.items():
        data = make()
        start = time.perf_counter()
        if target == "framing":
            for framing in targets.FRAMINGS:
                targets.framing_consistent(data, framing, 65536, [65536, 1, 4095])
        else:
            targets.TARGETS[target](data)
        took = time.perf_counter() - start
        print(f"generated seed {name} ({len(data)} bytes): {took:.2f} s", file=sys.stderr)


def prepare(target: str, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(seeds(target)):
        (work / f"seed-{i:04d}").write_bytes(data)


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] not in targets.TARGETS:
        sys.exit(f"usage: python fuzz/run.py {{{','.join(targets.TARGETS)}}} [libFuzzer flags]")
    target, flags = args[0], args[1:]
    work = Path(f"/tmp/dsrouter-fuzz/{target}")
    for flag in list(flags):
        if flag.startswith("--work="):
            work = Path(flag.split("=", 1)[1])
            flags.remove(flag)
    replaying = any(not f.startswith("-") for f in flags)  # crash files or corpus folders given
    if not replaying:
        run_generated(target)
        prepare(target, work)
        flags.append(str(work))
    if not any(f.startswith("-timeout=") for f in flags):
        flags.insert(0, "-timeout=10")  # a parse that takes 10 s is a finding too
    if not any(f.startswith("-dict=") for f in flags):
        name = "config" if target == "config" else "messages"
        flags.insert(0, f"-dict={HERE / name}.dict")
    atheris.Setup([sys.argv[0], *flags], targets.TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
