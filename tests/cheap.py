"""Settings that make an end-to-end run cheap per page without changing what it tests.

The tiny model's cost is almost all its vision tower over the crops, so a 490 px render (crops of
about 378 px instead of 980) makes a page ~6x cheaper (measured: 0.87 -> 0.15 s per page on one
core). The pipeline's paths are the same at any size; tests of rendering itself keep 1960 px.
"""
LONGEST_EDGE = 490
SMALL_RENDER = {"longest_edge_px": LONGEST_EDGE, "max_page_pixels": LONGEST_EDGE * LONGEST_EDGE}
SMALL_RENDER_FLAGS = ["--longest-edge", str(LONGEST_EDGE), "--max-page-pixels", str(LONGEST_EDGE * LONGEST_EDGE)]
