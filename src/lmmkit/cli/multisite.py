"""``lmmkit site-summary`` and ``lmmkit multisite-fit``: federated mixed models from per-site
cross-product summaries (:mod:`lmmkit.validation.multisite`)::

    lmmkit site-summary --data site.csv --formula "y ~ x + (1 | site)" --site-id A --out A.json
    lmmkit multisite-fit A.json B.json C.json [--ml] [--json fit.json]
"""

from __future__ import annotations

from typing import Any

__all__ = ["register", "site_summary_cli", "multisite_fit_cli"]

#: Shown in ``--help``; equals :data:`lmmkit.validation.multisite.DEFAULT_MIN_PATIENTS`
#: (held by tests/cli/test_cli_package.py) without importing the library to print help.
_MIN_PATIENTS_HELP = 10


def site_summary_cli(args: Any) -> int:
    """``lmmkit site-summary``: one site's data file -> summary JSON."""
    from lmmkit._io import read_table
    from lmmkit.validation.multisite import DEFAULT_MIN_PATIENTS, site_summary

    data = read_table(args.data, getattr(args, "factor", None))
    min_patients = getattr(args, "min_patients", None)
    s = site_summary(
        data,
        args.formula,
        site=args.site_id,
        min_patients=int(DEFAULT_MIN_PATIENTS if min_patients is None else min_patients),
        patient=getattr(args, "patient", None),
    )
    s.to_json(args.out)
    print(
        f"site {s.site!r}: {s.n} rows ({s.n_patients} counted units), {len(s.fixef_names)} "
        f"fixed and {len(s.re_names)} random columns; wrote {args.out}"
    )
    return 0


def multisite_fit_cli(args: Any) -> int:
    """``lmmkit multisite-fit``: site summary JSON files -> the pooled-equivalent fit."""
    from lmmkit.validation.multisite import load_site_summary, multisite_fit

    summaries = [load_site_summary(path) for path in args.summaries]
    res = multisite_fit(summaries, reml=not getattr(args, "ml", False))
    print(res.summary())
    out = getattr(args, "json", None)
    if out:
        res.to_json(out)
        print(f"\nwrote {out}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``site-summary`` and ``multisite-fit`` to an argparse subparsers object."""
    ss = subparsers.add_parser(
        "site-summary", help="summarize one site's data for a multisite (federated) fit"
    )
    ss.add_argument("--data", required=True, help="the site's CSV/TSV/Parquet file")
    ss.add_argument("--formula", required=True, help="e.g. 'y ~ age + (1 | site)'")
    ss.add_argument("--site-id", required=True, dest="site_id", help="this site's identifier")
    ss.add_argument("--out", required=True, help="summary JSON to write (atomically)")
    ss.add_argument(
        "--min-patients",
        dest="min_patients",
        type=int,
        default=None,
        help=f"refuse sites with fewer patients/rows (default {_MIN_PATIENTS_HELP})",
    )
    ss.add_argument("--patient", help="patient id column (counts patients, not rows)")
    ss.add_argument("--factor", action="append", help="treat this column as categorical")
    ss.set_defaults(func=site_summary_cli)
    mf = subparsers.add_parser(
        "multisite-fit", help="fit a (z | site) mixed model from site summary files"
    )
    mf.add_argument("summaries", nargs="+", help="site summary JSON files")
    mf.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    mf.add_argument("--json", help="write the fit as JSON to this path (atomically)")
    mf.set_defaults(func=multisite_fit_cli)
