// A flow's task graph as SVG: longest-path layering, then one barycenter sweep to order each layer.
// Linear in tasks + edges apart from sorting within layers (n log n); a 1,000-task flow draws in well under a second.

const SVG = 'http://www.w3.org/2000/svg';
const NODE_W = 168;
const NODE_H = 30;
const GAP_X = 56;
const GAP_Y = 14;
const PAD = 12;

/**
 * Layers and positions of a graph: tasks [{slug, name}], edges [{upstream, downstream}].
 * Returns {nodes: Map slug → {slug, name, layer, order, x, y}, edges: [[from, to]], width, height}.
 * Edges of a cycle (a flow never has one) are left out rather than looping forever.
 */
export function layout(tasks, edges) {
  const nodes = new Map();
  for (const t of tasks) nodes.set(t.slug, { slug: t.slug, name: t.name || t.slug, layer: 0, order: 0, preds: [], succs: [] });
  const seen = new Set();
  const pairs = [];
  for (const e of edges) {
    const key = `${e.upstream}\u0000${e.downstream}`;
    const u = nodes.get(e.upstream);
    const v = nodes.get(e.downstream);
    if (!u || !v || seen.has(key) || u === v) continue;
    seen.add(key);
    u.succs.push(v);
    v.preds.push(u);
    pairs.push([e.upstream, e.downstream]);
  }
  // Kahn's algorithm; a node's layer is the longest path to it from a source
  const indegree = new Map();
  const queue = [];
  for (const n of nodes.values()) {
    indegree.set(n, n.preds.length);
    if (n.preds.length === 0) queue.push(n);
  }
  for (let i = 0; i < queue.length; i++) {
    const u = queue[i];
    for (const v of u.succs) {
      if (v.layer < u.layer + 1) v.layer = u.layer + 1;
      const left = indegree.get(v) - 1;
      indegree.set(v, left);
      if (left === 0) queue.push(v);
    }
  }
  // a source that feeds only later layers (a Parameter, say) moves next to its first consumer
  for (const n of queue) {
    if (n.preds.length || !n.succs.length) continue;
    let first = Infinity;
    for (const v of n.succs) first = Math.min(first, v.layer);
    n.layer = first - 1;
  }
  const layers = [];
  for (const n of queue) (layers[n.layer] ||= []).push(n);
  // one sweep from the sources: each node sits near the mean position of its predecessors
  for (let l = 0; l < layers.length; l++) {
    const layer = layers[l] || (layers[l] = []);
    if (l > 0) {
      for (const n of layer) {
        let sum = 0;
        for (const p of n.preds) sum += p.order;
        n.bary = n.preds.length ? sum / n.preds.length : n.order;
      }
      layer.sort((a, b) => a.bary - b.bary);
    }
    layer.forEach((n, i) => { n.order = i; });
  }
  let height = 0;
  for (const layer of layers) height = Math.max(height, layer.length);
  for (const n of queue) {
    n.x = PAD + n.layer * (NODE_W + GAP_X);
    n.y = PAD + n.order * (NODE_H + GAP_Y);
  }
  return {
    nodes, edges: pairs, drawn: queue.length,
    width: PAD * 2 + Math.max(1, layers.length) * (NODE_W + GAP_X) - GAP_X,
    height: PAD * 2 + Math.max(1, height) * (NODE_H + GAP_Y) - GAP_Y,
  };
}

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function short(text, max = 22) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * Draw the graph into a new <svg class="dag">. Returns {svg, setStates(map slug → state)}.
 * Each node is <g class="node state-X" data-slug>, each edge <path class="edge" data-from data-to>.
 */
export function drawDag(tasks, edges) {
  const g = layout(tasks, edges);
  const root = svg('svg', {
    class: 'dag', width: g.width, height: g.height, viewBox: `0 0 ${g.width} ${g.height}`, role: 'img',
    'aria-label': `Task graph: ${tasks.length} tasks, ${g.edges.length} edges`,
  });
  const edgeLayer = svg('g', { class: 'edges' });
  const nodeLayer = svg('g', { class: 'nodes' });
  const parts = [];
  for (const [from, to] of g.edges) {
    const u = g.nodes.get(from);
    const v = g.nodes.get(to);
    if (u.x === undefined || v.x === undefined) continue;
    const x1 = u.x + NODE_W;
    const y1 = u.y + NODE_H / 2;
    const x2 = v.x;
    const y2 = v.y + NODE_H / 2;
    const mx = (x1 + x2) / 2;
    const path = svg('path', { class: 'edge', d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` });
    path.dataset.from = from;
    path.dataset.to = to;
    parts.push(path);
  }
  edgeLayer.append(...parts);
  const byslug = new Map();
  const nodes = [];
  for (const n of g.nodes.values()) {
    if (n.x === undefined) continue;
    const node = svg('g', { class: 'node state-Pending', transform: `translate(${n.x},${n.y})`, tabindex: 0 });
    node.dataset.slug = n.slug;
    const title = svg('title', {});
    title.textContent = `${n.name} (${n.slug}): not started`;
    const text = svg('text', { x: 10, y: NODE_H / 2 + 4 });
    text.textContent = short(n.name);
    node.append(title, svg('rect', { width: NODE_W, height: NODE_H, rx: 6 }), text);
    byslug.set(n.slug, { node, title, name: n.name });
    nodes.push(node);
  }
  nodeLayer.append(...nodes);
  root.append(edgeLayer, nodeLayer);
  return {
    svg: root,
    setStates(states) {
      for (const [slug, entry] of byslug) {
        const state = states.get(slug) || 'Pending';
        const cls = `node state-${state}`;
        if (entry.node.getAttribute('class') !== cls) {
          entry.node.setAttribute('class', cls);
          entry.title.textContent = `${entry.name} (${slug}): ${state}`;
        }
      }
    },
  };
}
