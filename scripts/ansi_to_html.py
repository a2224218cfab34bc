#!/usr/bin/env python3
"""Turns a terminal screen captured with colours (`tmux capture-pane -e -p -N`) into one
self-contained HTML page that draws it as a terminal would: a monospace grid on a dark
background, one line per row, with the SGR attributes the capture carries.

Used by scripts/dashboard-picture.sh, which screenshots the page with headless Chromium.

    scripts/ansi_to_html.py COLUMNS ROWS < screen.ansi > screen.html
    scripts/ansi_to_html.py --size COLUMNS ROWS      # the page's size in pixels, as W,H

Understands SGR (ESC [ ... m) only: reset, bold, dim, italic, underline, reverse, hidden,
strike and their resets; foreground 30-37, 90-97, 39, 38;5;n, 38;2;r;g;b; background 40-47,
100-107, 49, 48;5;n, 48;2;r;g;b (also with ':' between the parts). Other escape sequences are
dropped. Standard library only.
"""

import html
import re
import sys

# The 16 ANSI colours: the Tango palette many terminals ship, with xterm's bright black
# (ratatui's DarkGray), which stays legible on the dark background.
PALETTE16 = [
    "#2e3436", "#cc0000", "#4e9a06", "#c4a000", "#3465a4", "#75507b", "#06989a", "#d3d7cf",
    "#7f7f7f", "#ef2929", "#8ae234", "#fce94f", "#729fcf", "#ad7fa8", "#34e2e2", "#eeeeec",
]
DEFAULT_FG = "#d3d7cf"
DEFAULT_BG = "#1c1c1c"

# Cell geometry of the page, in CSS pixels. DejaVu Sans Mono's advance is 0.6021 em; letter
# spacing rounds it to whole pixels, so that runs of block characters show no seams.
FONT_PX = 15
CELL_W = 9
LETTER_SPACING = CELL_W - FONT_PX * 0.6021
CELL_H = 17  # DejaVu's box-drawing glyphs are 1.164 em tall: rows join
PAD = 12


def colour256(n):
    """The xterm 256-colour palette: 16 ANSI, a 6x6x6 cube, 24 greys."""
    if n < 16:
        return PALETTE16[n]
    if n < 232:
        n -= 16
        levels = [0, 95, 135, 175, 215, 255]
        r, g, b = levels[n // 36], levels[(n // 6) % 6], levels[n % 6]
        return f"#{r:02x}{g:02x}{b:02x}"
    grey = 8 + (n - 232) * 10
    return f"#{grey:02x}{grey:02x}{grey:02x}"


class Style:
    def __init__(self):
        self.reset()

    def reset(self):
        self.fg = None
        self.bg = None
        self.bold = self.dim = self.italic = self.underline = False
        self.reverse = self.hidden = self.strike = False

    def key(self):
        return (self.fg, self.bg, self.bold, self.dim, self.italic, self.underline,
                self.reverse, self.hidden, self.strike)

    def css(self):
        fg, bg = self.fg, self.bg
        if self.reverse:
            fg, bg = (bg or DEFAULT_BG), (fg or DEFAULT_FG)
        rules = []
        if fg:
            rules.append(f"color:{fg}")
        if bg:
            rules.append(f"background:{bg}")
        if self.bold:
            rules.append("font-weight:bold")
        if self.dim:
            rules.append("opacity:0.6")
        if self.italic:
            rules.append("font-style:italic")
        decorations = [d for d, on in (("underline", self.underline),
                                       ("line-through", self.strike)) if on]
        if decorations:
            rules.append("text-decoration:" + " ".join(decorations))
        if self.hidden:
            rules.append("visibility:hidden")
        return ";".join(rules)

    def apply(self, params):
        # "38:2::r:g:b" (colon form) and "38;2;r;g;b" (semicolon form) both end up as lists.
        groups = [p for p in params.split(";")] if params else ["0"]
        i = 0
        while i < len(groups):
            part = groups[i]
            if ":" in part:
                sub = [int(x) if x else 0 for x in part.split(":")]
                self.extended(sub)
                i += 1
                continue
            code = int(part) if part else 0
            if code in (38, 48):
                rest = [int(x) if x else 0 for x in groups[i + 1:]]
                if rest and rest[0] == 5 and len(rest) >= 2:
                    self.extended([code, 5, rest[1]])
                    i += 3
                    continue
                if rest and rest[0] == 2 and len(rest) >= 4:
                    self.extended([code, 2, rest[1], rest[2], rest[3]])
                    i += 5
                    continue
                i += 1
                continue
            self.simple(code)
            i += 1

    def extended(self, sub):
        code, kind = sub[0], sub[1] if len(sub) > 1 else None
        if code not in (38, 48):
            self.simple(code)
            return
        colour = None
        if kind == 5 and len(sub) >= 3:
            colour = colour256(sub[2])
        elif kind == 2 and len(sub) >= 5:
            r, g, b = sub[-3:]
            colour = f"#{r:02x}{g:02x}{b:02x}"
        if code == 38:
            self.fg = colour
        else:
            self.bg = colour

    def simple(self, code):
        if code == 0:
            self.reset()
        elif code in SETS:
            setattr(self, SETS[code], True)
        elif code in CLEARS:
            for name in CLEARS[code]:
                setattr(self, name, False)
        elif 30 <= code <= 37:
            self.fg = PALETTE16[code - 30]
        elif code == 39:
            self.fg = None
        elif 40 <= code <= 47:
            self.bg = PALETTE16[code - 40]
        elif code == 49:
            self.bg = None
        elif 90 <= code <= 97:
            self.fg = PALETTE16[code - 90 + 8]
        elif 100 <= code <= 107:
            self.bg = PALETTE16[code - 100 + 8]


# The attributes an SGR code turns on, and those a code turns off (22 ends bold and dim both).
SETS = {1: "bold", 2: "dim", 3: "italic", 4: "underline", 7: "reverse", 8: "hidden", 9: "strike"}
CLEARS = {
    22: ("bold", "dim"),
    23: ("italic",),
    24: ("underline",),
    27: ("reverse",),
    28: ("hidden",),
    29: ("strike",),
}


ESCAPE = re.compile(r"\x1b\[([0-9;:]*)m|\x1b\[[0-9;:?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b.")


def line_to_html(line, style, columns):
    """One screen row as spans; `style` carries over to the next row as in a terminal."""
    out = []
    run, run_key, run_css = [], None, ""
    width = 0

    def flush():
        if run:
            text = html.escape("".join(run))
            out.append(f'<span style="{run_css}">{text}</span>' if run_css else text)
            run.clear()

    pos = 0
    for match in ESCAPE.finditer(line):
        text = line[pos:match.start()]
        pos = match.end()
        for ch in text:
            if width >= columns:
                break
            if style.key() != run_key:
                flush()
                run_key, run_css = style.key(), style.css()
            run.append(ch)
            width += 1
        if match.group(1) is not None:
            style.apply(match.group(1))
    for ch in line[pos:]:
        if width >= columns:
            break
        if style.key() != run_key:
            flush()
            run_key, run_css = style.key(), style.css()
        run.append(ch)
        width += 1
    flush()
    return "".join(out)


def page_size(columns, rows):
    return round(columns * CELL_W + 2 * PAD), rows * CELL_H + 2 * PAD


def main():
    args = sys.argv[1:]
    size_only = args[:1] == ["--size"]
    if size_only:
        args = args[1:]
    if len(args) != 2:
        sys.exit("usage: ansi_to_html.py [--size] COLUMNS ROWS < screen.ansi > screen.html")
    columns, rows = int(args[0]), int(args[1])
    width, height = page_size(columns, rows)
    if size_only:
        print(f"{width},{height}")
        return
    lines = sys.stdin.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = (lines + [""] * rows)[:rows]
    style = Style()
    body = "\n".join(f'<div class="row">{line_to_html(l, style, columns) or " "}</div>'
                     for l in lines)
    sys.stdout.write(f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>fleetsim dashboard</title>
<style>
html, body {{ margin: 0; padding: 0; background: {DEFAULT_BG}; }}
.screen {{
  width: {width - 2 * PAD}px; height: {height - 2 * PAD}px; padding: {PAD}px;
  font-family: "DejaVu Sans Mono", monospace; font-size: {FONT_PX}px;
  color: {DEFAULT_FG}; background: {DEFAULT_BG};
  font-variant-ligatures: none; letter-spacing: {LETTER_SPACING:.4f}px; overflow: hidden;
}}
.row {{ height: {CELL_H}px; line-height: {CELL_H}px; white-space: pre; }}
</style></head>
<body><div class="screen">
{body}
</div></body></html>
""")


if __name__ == "__main__":
    main()
