/// The site's one stylesheet: a small responsive layout (one column on a phone, a grid on wider
/// screens), readable type, visible focus for keyboard users.
enum Stylesheet {
    static let text = """
        :root { --ink: #1d232a; --muted: #5b6570; --line: #dde2e7; --accent: #0b6e4f; --bad: #a4262c; --bg: #fafbfc; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
        a { color: var(--accent); }
        a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible { outline: 3px solid #f4b400; outline-offset: 2px; }
        .skip { position: absolute; left: -999px; }
        .skip:focus { left: 1rem; top: 1rem; background: #fff; padding: .5rem; z-index: 1; }
        .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
        .top { display: flex; flex-wrap: wrap; gap: .75rem 1.5rem; align-items: center; padding: .75rem 1rem; background: #fff; border-bottom: 1px solid var(--line); }
        .brand { font-weight: 700; font-size: 1.25rem; text-decoration: none; color: var(--ink); }
        .search { display: flex; flex: 1 1 16rem; gap: .5rem; }
        .search input { flex: 1; min-width: 0; }
        input, select, button { font: inherit; padding: .45rem .6rem; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
        button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
        main { max-width: 72rem; margin: 0 auto; padding: 1rem; }
        h1 { font-size: 1.6rem; margin: .5rem 0 1rem; }
        .categories { display: flex; flex-wrap: wrap; gap: .5rem; list-style: none; padding: 0; }
        .categories a { display: inline-block; padding: .25rem .75rem; border: 1px solid var(--line); border-radius: 999px; background: #fff; text-decoration: none; }
        .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: 1rem; list-style: none; padding: 0; }
        .card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: .75rem; display: flex; flex-direction: column; gap: .25rem; }
        .card a { text-decoration: none; color: var(--ink); display: flex; flex-direction: column; gap: .5rem; }
        .card img, .noimage { width: 100%; height: auto; aspect-ratio: 1; object-fit: cover; border-radius: 6px; background: #eef1f4; }
        .name { font-weight: 600; }
        .price { font-weight: 700; }
        .stock.out { color: var(--bad); }
        .stock.low { color: #8a5a00; }
        .filters { display: flex; flex-wrap: wrap; gap: .75rem; align-items: end; margin-bottom: 1rem; }
        .filters label { display: flex; flex-direction: column; font-size: .9rem; color: var(--muted); }
        .filters input { width: 8rem; }
        .pages { margin: 1.5rem 0; }
        .product { display: grid; gap: 1.5rem; }
        .gallery img { width: 100%; height: auto; border-radius: 8px; }
        .attributes { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
        .attributes dt { color: var(--muted); }
        .sku { color: var(--muted); font-size: .9rem; }
        .bottom { border-top: 1px solid var(--line); color: var(--muted); padding: 1rem; text-align: center; font-size: .9rem; }
        @media (min-width: 48rem) { .product { grid-template-columns: 1fr 1fr; } }

        """
}
