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
        .menu { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: center; }
        .inline { display: inline; }
        button.link { background: none; border: none; color: var(--accent); padding: 0; text-decoration: underline; }
        button.secondary, .button.secondary { background: #fff; color: var(--accent); }
        .button { display: inline-block; padding: .5rem 1rem; border-radius: 6px; background: var(--accent); color: #fff; text-decoration: none; }
        .narrow { max-width: 26rem; }
        .stack { display: flex; flex-direction: column; gap: .35rem; }
        .stack button { align-self: flex-start; margin-top: .5rem; }
        .panel { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 1rem; margin-bottom: 1rem; }
        fieldset { border: 1px solid var(--line); border-radius: 6px; display: flex; flex-direction: column; gap: .35rem; margin: 0 0 .75rem; }
        textarea { font: inherit; padding: .45rem .6rem; border: 1px solid var(--line); border-radius: 6px; }
        .hint { color: var(--muted); font-size: .9rem; }
        .problem { border-left: 4px solid var(--bad); background: #fdf0f0; padding: .5rem .75rem; }
        .notice { border-left: 4px solid var(--accent); background: #eef8f3; padding: .5rem .75rem; }
        .scroll { overflow-x: auto; }
        .lines { width: 100%; border-collapse: collapse; background: #fff; }
        .lines th, .lines td { text-align: left; padding: .5rem; border-bottom: 1px solid var(--line); vertical-align: middle; }
        .lines .num { text-align: right; white-space: nowrap; }
        .qty { width: 4.5rem; }
        .status { display: inline-block; padding: .1rem .5rem; border-radius: 999px; background: #eef1f4; font-size: .9rem; }
        .s-paid, .s-delivered { background: #e3f4ec; }
        .s-shipped { background: #e6eefa; }
        .s-cancelled { background: #fbe9ea; }
        .summary, .plain, .notes, .tiles { list-style: none; padding: 0; }
        .summary li { display: flex; justify-content: space-between; gap: 1rem; padding: .25rem 0; }
        .checkout { display: grid; gap: 1rem; }
        .tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(14rem, 1fr)); gap: 1rem; }
        .tiles li, .notes li { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 1rem; }
        .notes li { margin-bottom: .75rem; }
        .notes li.unread { border-left: 4px solid var(--accent); }
        .notes h2 { font-size: 1.1rem; margin: 0; }
        .when { color: var(--muted); font-size: .85rem; margin: 0; }
        .admin { display: flex; flex-wrap: wrap; gap: .5rem 1rem; margin-bottom: 1rem; padding-bottom: .5rem; border-bottom: 1px solid var(--line); }
        .actions { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; margin-top: 1rem; }
        [aria-current="page"] { font-weight: 700; border-color: var(--accent); }
        @media (min-width: 48rem) { .product { grid-template-columns: 1fr 1fr; } .checkout { grid-template-columns: 1fr 1.4fr; } }

        """
}
