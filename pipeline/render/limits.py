"""The limits of rendering one document, and their defaults: written once here, read by RunConfig's
fields (pipeline.config) and the CLI's help. Nothing heavy is imported, so the config can read them
without loading the renderer."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from pageray.pipeline.render.geometry import DEFAULT_LONGEST_EDGE_PX, DEFAULT_MAX_PIXELS, MAX_LONGEST_EDGE_PX
from pageray.pipeline.render.passwords import NO_PASSWORDS, PasswordBook


@dataclass(frozen=True)
class RenderLimits:
    """Everything that bounds the rendering of one document, as one object from the config to the
    render child; the defaults, written here, are RunConfig's (pipeline.config) and suit Idefics2
    with image splitting (render.geometry). Field names are the config's, so a row's error names
    the setting to change."""

    longest_edge_px: int = DEFAULT_LONGEST_EDGE_PX
    max_page_pixels: int = DEFAULT_MAX_PIXELS
    max_pages_per_doc: int = 2000
    max_file_bytes: int = 512 * 1024 * 1024
    render_timeout_s: float = 120.0  # wall time per document (pipeline.render.isolation)
    render_memory_mb: int = 4096     # address space of a render child
    render_retries: int = 1          # retries of a page after a native crash
    # not a limit: it rides along so that the config's render settings reach the step as one object
    passwords: PasswordBook = field(default=NO_PASSWORDS, repr=False)

    def __post_init__(self) -> None:
        for limit in fields(self)[:4]:
            value = getattr(self, limit.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"RenderLimits.{limit.name} must be an integer >= 1, got {value!r}")
        if not self.render_timeout_s > 0 or self.render_memory_mb < 1 or self.render_retries < 0:
            raise ValueError(f"RenderLimits: render_timeout_s > 0, render_memory_mb >= 1 and render_retries >= 0 "
                             f"are needed, got {self}")
        if self.longest_edge_px > MAX_LONGEST_EDGE_PX:
            raise ValueError(
                f"RenderLimits.longest_edge_px must be <= {MAX_LONGEST_EDGE_PX}, "
                f"got {self.longest_edge_px}"
            )
        if self.max_page_pixels > MAX_LONGEST_EDGE_PX**2:
            raise ValueError(
                f"RenderLimits.max_page_pixels must be <= {MAX_LONGEST_EDGE_PX**2} "
                f"({MAX_LONGEST_EDGE_PX} px squared), got {self.max_page_pixels}"
            )
