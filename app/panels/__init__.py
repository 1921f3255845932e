"""One module per panel of the studio page. Each has ``build(ctx)``, which makes its widgets inside the
current layout and returns them, and ``wire(ctx, widgets)``, which connects their events; callbacks are
short calls into ``projects/``."""
