"""Pages from untrusted documents: page geometry (`geometry`), PDF and image rasterizing
(`pages`, `images`), the disposable render child (`child`) and the parent that watches it
(`isolation`), and the pipeline step that turns plan rows into page rows (`step`).

Nothing in here stops a run: every outcome of a document is a row (pipeline.errors)."""
