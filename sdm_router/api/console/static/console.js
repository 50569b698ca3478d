// sdm-router console: keyboard shortcuts on the review queue (the pages work without this).
// j/k: next/previous item, c: correct, i: incorrect, o: open the decision.
document.addEventListener("DOMContentLoaded", () => {
  const items = Array.from(document.querySelectorAll("tr.item"));
  if (!items.length) return;
  let at = 0;
  const show = () => items.forEach((row, n) => row.classList.toggle("current", n === at));
  show();
  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
    const row = items[at];
    if (event.key === "j") { at = Math.min(at + 1, items.length - 1); show(); }
    else if (event.key === "k") { at = Math.max(at - 1, 0); show(); }
    else if (event.key === "c") row.querySelector("button.c").click();
    else if (event.key === "i") row.querySelector("button.i").click();
    else if (event.key === "o") window.location.assign(row.dataset.href);
  });
});
