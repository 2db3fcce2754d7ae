/**
 * Tables that become cards on a phone (live.css, "table.card-table"): each body cell (a row's own
 * heading cell too) gets the heading of its column as ``data-label``, which the phone layout shows
 * before the value. Rows the pages' scripts add later are labelled as they arrive (a MutationObserver per table), so the row
 * builders stay unaware of the layout. A cell spanning columns (an "empty" row) gets no label.
 */

function headings(table) {
  const row = table.tHead?.rows[0];
  if (!row) return [];
  const labels = [];
  for (const cell of row.cells) {
    const text = cell.textContent.replace(/\s+/g, " ").trim();
    for (let span = 0; span < cell.colSpan; span += 1) labels.push(text);
  }
  return labels;
}

function labelRow(row, labels) {
  let column = 0;
  for (const cell of row.cells) {
    if (cell.colSpan === 1 && labels[column] && !cell.hasAttribute("data-label")) {
      cell.dataset.label = labels[column];
    }
    column += cell.colSpan;
  }
}

/** Label the rows of ``table`` now and whenever rows or cells are added to it. */
export function labelTable(table) {
  const labels = headings(table);
  if (!labels.length) return;
  for (const body of table.tBodies) for (const row of body.rows) labelRow(row, labels);
  new MutationObserver((records) => {
    for (const record of records) {
      if (record.target.tagName === "TR") labelRow(record.target, labels);
      for (const node of record.addedNodes) {
        if (node.tagName === "TR") labelRow(node, labels);
        else if (node.tagName === "TBODY") for (const row of node.rows) labelRow(row, labels);
      }
    }
  }).observe(table, { childList: true, subtree: true });
}

document.querySelectorAll("table.card-table").forEach(labelTable);
