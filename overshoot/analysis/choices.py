"""The analysis's fixed choices that its command lines name before anything heavy is imported (numpy, pandas):
the bound on a comparison's smoothing window and the formats a report is written in."""

from __future__ import annotations

# The smoothing window of a comparison is at most this fraction of its runs' planned length.
WINDOW_FRACTION = 5
# The document formats of a report (its figures are PNG and PDF: figstyle.FIGURE_FORMATS).
FORMATS = ("md", "csv", "tex", "html")
