"""Tests that kill the mutants of gradtx/_catalog.py the other test files let survive.

The catalog's helpers run at import, building the entries the documentation pages print:
these check what the pages say about a port and a paper, against what _catalog.py writes.
The verdicts: tests/MUTATION.md (issue 20).
"""

from __future__ import annotations

from test_catalog import optimizer_pages

from gradtx._catalog import CATALOG


def _references(name: str) -> list[str]:
    return [line for line in optimizer_pages.page(CATALOG[name], {}, []).splitlines()
            if line.startswith("- ") and "<https://" in line]  # fmt: skip


def test_a_papers_venue_is_printed_where_given_and_only_there():
    # sgd cites Robbins and Monro with the journal; muon cites Liu et al.'s preprint, no venue.
    assert (
        "- Robbins, Monro (1951). *A Stochastic Approximation Method*. Annals of Mathematical"
        " Statistics. <https://doi.org/10.1214/aoms/1177729586>"
    ) in _references("sgd")
    [preprint] = [line for line in _references("muon") if "Muon is Scalable" in line]
    assert preprint.endswith(
        "*Muon is Scalable for LLM Training*. <https://arxiv.org/abs/2502.16982>"
    )


def test_a_port_keeps_the_example_and_the_params_it_was_written_with():
    sgd = CATALOG["compat.pytorch.sgd"]
    assert sgd.example_source == "gradtx.compat.pytorch.sgd(lr=0.1, momentum=0.9)"
    assert f"`{sgd.example_source}` is this chain" in optimizer_pages.page(sgd, {}, [])
    # Matrix params only for the port that takes 2-D leaves only (torch's Muon).
    assert [n for n, e in CATALOG.items() if e.ports is not None and e.matrix_params] == [
        "compat.pytorch.muon"
    ]
    assert not CATALOG["compat.keras.adam"].matrix_params
