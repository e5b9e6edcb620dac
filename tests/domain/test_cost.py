"""The cost model: prices per side by colour and size, duplex discount, copies."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from pcnet.domain.cost import job_cost, page_prices
from pcnet.domain.model import CostModel

D = Decimal
MODEL = CostModel(grey=D("0.10"), colour=D("0.50"), duplex_discount=D("0.02"),
                  sizes={"A3": (D("0.20"), D("1.00"))})

prices = st.decimals(min_value=0, max_value=10, places=4)


def test_grey_and_colour_sides_are_priced_separately():
    assert job_cost(MODEL, pages=4, colour_pages=2, duplex=False, copies=1, paper_size="A4") == D("1.2000")


def test_copies_multiply_the_whole_job():
    assert job_cost(MODEL, pages=4, colour_pages=2, duplex=False, copies=3, paper_size="A4") == D("3.6000")


def test_duplex_discount_is_taken_off_every_side():
    # 2 grey at 0.08 + 2 colour at 0.48
    assert job_cost(MODEL, pages=4, colour_pages=2, duplex=True, copies=1, paper_size="A4") == D("1.1200")


def test_paper_size_table_overrides_defaults_case_insensitively():
    assert page_prices(MODEL, "a3") == (D("0.20"), D("1.00"))
    assert page_prices(MODEL, "Letter") == (D("0.10"), D("0.50"))
    assert job_cost(MODEL, pages=1, colour_pages=1, duplex=False, copies=1, paper_size="A3") == D("1.0000")


def test_discount_never_takes_a_side_below_zero():
    model = CostModel(grey=D("0.01"), colour=D("0.02"), duplex_discount=D("0.05"))
    assert job_cost(model, pages=10, colour_pages=5, duplex=True, copies=2, paper_size="A4") == D("0")


@given(grey=prices, colour=prices, discount=prices, pages=st.integers(0, 500),
       colour_share=st.floats(0, 1), duplex=st.booleans(), copies=st.integers(1, 50))
def test_cost_properties(grey, colour, discount, pages, colour_share, duplex, copies):
    model = CostModel(grey=grey, colour=colour, duplex_discount=discount)
    colour_pages = int(pages * colour_share)
    cost = job_cost(model, pages=pages, colour_pages=colour_pages, duplex=duplex, copies=copies,
                    paper_size="A4")
    one = job_cost(model, pages=pages, colour_pages=colour_pages, duplex=duplex, copies=1, paper_size="A4")
    assert isinstance(cost, Decimal)
    assert cost >= 0
    # Linear in copies, exactly (no rounding drift because prices have 4 places).
    assert cost == one * copies
    # Never more than simplex, never more than all-colour pricing of the higher price.
    simplex = job_cost(model, pages=pages, colour_pages=colour_pages, duplex=False, copies=copies, paper_size="A4")
    assert cost <= simplex
    assert cost <= pages * copies * max(grey, colour)
