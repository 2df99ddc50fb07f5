"""The ``nasedu`` command line (also ``python -m nasedu``).

    nasedu search METHOD --budget smoke --dataset digits --device auto --seed 0 --out DIR [--resume]
    nasedu train --genotype NAME_OR_JSON --dataset cifar10 --budget paper [--out DIR] [--resume]
    nasedu genotypes [NAME]
    nasedu methods
    nasedu bench NAME [--device auto] [--out FILE]

Errors a reader can cause (unknown method, budget, dataset or genotype, malformed
JSON, CUDA asked for but absent, corrupt checkpoint) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from nasedu.budgets import BUDGETS, merge, parse_override


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nasedu",
        description="Neural Architecture Search, "
        "reproduced: run the book's searches from a shell.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, dataset_default: str | None) -> None:
        p.add_argument("--budget", default="smoke", help=f"one of {', '.join(BUDGETS)}")
        p.add_argument(
            "--dataset",
            default=dataset_default,
            help="digits (embedded) or cifar10 (default: the budget's)",
        )
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", type=Path, default=None, help="output folder")
        p.add_argument(
            "--resume", action="store_true", help="continue the run in --out"
        )
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config field, e.g. samples=4",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    search = sub.add_parser("search", help="run a search method")
    search.add_argument("method", help="a method name (see `nasedu methods`)")
    common(search, None)
    train = sub.add_parser(
        "train", help="retrain a cell with the DARTS evaluation protocol"
    )
    train.add_argument(
        "--genotype",
        required=True,
        help="a published name (see `nasedu genotypes`), a JSON file or JSON text",
    )
    common(train, None)
    genotypes = sub.add_parser(
        "genotypes", help="list published genotypes or print one"
    )
    genotypes.add_argument("name", nargs="?")
    sub.add_parser("methods", help="list the search methods")
    bench = sub.add_parser("bench", help="time and measure memory of a benchmark")
    bench.add_argument("name", help="a benchmark name (e.g. train, darts)")
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    bench.add_argument(
        "--out", type=Path, default=None, help="write the JSON report here"
    )
    return parser


def _overrides(items: list[str]) -> dict:
    merged: dict = {}
    for item in items:
        key, value = parse_override(item)
        merged = merge(merged, {key: value})
    return merged


def _search(args) -> int:
    from nasedu.search import run

    if args.out is None:
        args.out = Path("runs") / f"{args.method}-{args.budget}-seed{args.seed}"
    result = run(
        args.method,
        budget=args.budget,
        dataset=args.dataset,
        device=args.device,
        seed=args.seed,
        out=args.out,
        resume=args.resume,
        progress=not args.quiet,
        **_overrides(args.overrides),
    )
    print(json.dumps(result.result, indent=1))
    print(f"wrote {args.out}/config.json, history.jsonl, result.json, checkpoint.pt")
    return 0


def _train(args) -> int:
    from nasedu import data as data_mod
    from nasedu.budgets import resolve, to_dict
    from nasedu.checkpoint import write_json_atomic
    from nasedu.device import resolve_device, seed_everything
    from nasedu.evaluate import RETRAIN_BUDGETS, RetrainConfig, retrain
    from nasedu.genotypes import resolve as resolve_genotype

    genotype = resolve_genotype(args.genotype)
    config = resolve(
        RetrainConfig, RETRAIN_BUDGETS, args.budget, **_overrides(args.overrides)
    )
    config = dataclasses.replace(config, train=config.train.replace(seed=args.seed))
    dataset = args.dataset or ("digits" if args.budget == "smoke" else "cifar10")
    device = resolve_device(args.device)
    out = (
        args.out
        or Path("runs") / f"train-{genotype.hash()}-{args.budget}-seed{args.seed}"
    )
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        out / "config.json",
        {
            "command": "train",
            "genotype": genotype.to_dict(),
            "budget": args.budget,
            "dataset": dataset,
            "device": args.device,
            "resolved_device": str(device),
            "seed": args.seed,
            "config": to_dict(config),
        },
    )
    seed_everything(args.seed)
    result = retrain(
        genotype,
        data_mod.load(dataset),
        config,
        device,
        out=out,
        resume=args.resume,
        progress=not args.quiet,
    )
    summary = {
        "test_acc": result.final_test_acc,
        "params": result.params,
        "seconds": result.seconds,
        "device": result.device,
    }
    write_json_atomic(out / "result.json", summary)
    print(json.dumps(summary, indent=1))
    return 0


def _genotypes(args) -> int:
    from nasedu import genotypes

    if args.name:
        print(genotypes.load(args.name).to_json(indent=1))
    else:
        for record in genotypes.published().values():
            print(f"{record['name']:<28} {record['source']['paper'].split(',')[0]}")
    return 0


def _methods(args) -> int:
    from nasedu.search import load_methods

    for name in load_methods().names():
        print(name)
    return 0


def _bench(args) -> int:
    from nasedu.bench import BENCHMARKS
    from nasedu.checkpoint import write_json_atomic
    from nasedu.device import resolve_device
    from nasedu.search import load_methods

    load_methods()  # papers register their benchmarks when imported
    report = BENCHMARKS.get(args.name)(resolve_device(args.device))
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out, report)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from nasedu.search import Interrupted

    command = {
        "search": _search,
        "train": _train,
        "genotypes": _genotypes,
        "methods": _methods,
        "bench": _bench,
    }[args.command]
    try:
        return command(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"nasedu: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"nasedu: {e}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
