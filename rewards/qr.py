"""QR codes of vouchers, as inline SVG (the staff admin now, the member portal later).

The SVG has no width or height, only a viewBox, so it scales to whatever box the page gives it;
dark modules are drawn on a white background that includes the 4-module quiet zone scanners
need, so the code reads on a dark page too. Its `<title>` (and `role="img"`) names it for
screen readers. The same text always gives the same SVG.
"""

import segno
from django.utils.translation import gettext

DARK = "#000"
LIGHT = "#fff"
QUIET_ZONE = 4  # modules, as ISO/IEC 18004 asks


def qr_svg(text: str, *, title: str | None = None, css_class: str = "qr-code") -> str:
    """An inline SVG of a QR code of `text` (error correction M at least: segno raises it when
    the symbol has room). `title` defaults to "QR code: <text>"; segno escapes it."""
    if not text:
        raise ValueError("qr_svg needs a non-empty text")
    code = segno.make_qr(text, error="m", boost_error=True)
    svg = code.svg_inline(
        scale=1,
        border=QUIET_ZONE,
        dark=DARK,
        light=LIGHT,
        title=title if title is not None else gettext("QR code: %(text)s") % {"text": text},
        omitsize=True,
        svgclass=css_class,
        lineclass=None,
    )
    # Crisp edges: no anti-aliased seams between the module rows when scaled.
    return svg.replace("<svg ", '<svg role="img" shape-rendering="crispEdges" ', 1)
