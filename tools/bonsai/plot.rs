//! The bits of SVG the plots share (sensitivity curves, kernel speed-ups).

/// Line colours, cycled.
pub const COLORS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// An SVG document of `w` x `h` with a white background and x/y axes at margin `m`; the
/// caller appends its marks and closes it with `</svg>`.
pub fn frame(w: f64, h: f64, m: f64) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n\
<line x1=\"{m}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
<line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{b}\" stroke=\"black\"/>\n",
        b = h - m,
        r = w - m
    )
}
