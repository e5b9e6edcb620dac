"""The cost of a job under a printer's cost model.

A job's cost = copies x (grey sides x grey price + colour sides x colour price), with the
paper size choosing the prices and, when printed in duplex, the duplex discount taken off each
side (never below zero for a side). Prices are per printed side ("page" in the job analysis).
"""

from decimal import Decimal

from pcnet.domain.model import CostModel
from pcnet.money import ZERO, quantize


def page_prices(model: CostModel, paper_size: str) -> tuple[Decimal, Decimal]:
    """(grey, colour) price of one side on this paper size. Size names match case-insensitively."""
    wanted = (paper_size or "").strip().lower()
    for name, prices in model.sizes.items():
        if name.lower() == wanted:
            return prices
    return model.grey, model.colour


def job_cost(model: CostModel, *, pages: int, colour_pages: int, duplex: bool, copies: int,
             paper_size: str) -> Decimal:
    """Total cost of the job, quantised to the storage precision."""
    if pages < 0 or colour_pages < 0 or copies < 0:
        raise ValueError("pages, colour pages and copies cannot be negative")
    colour_pages = min(colour_pages, pages)
    grey_price, colour_price = page_prices(model, paper_size)
    if duplex and model.duplex_discount:
        grey_price = max(ZERO, grey_price - model.duplex_discount)
        colour_price = max(ZERO, colour_price - model.duplex_discount)
    one_copy = (pages - colour_pages) * grey_price + colour_pages * colour_price
    return quantize(one_copy * copies)
