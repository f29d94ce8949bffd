// The Projects page (#/projects): every project with its flow count, and a form to create one
// (shown only to a token that may write); the server's refusal (a duplicate or bad name) shows by the field.

import { api, canWrite } from '../api.js';
import { fmtTime, h } from '../util.js';
import { useCss } from './flows.js';

export async function render(root) {
  useCss('more');
  document.title = 'Projects · headwater';
  const body = h('tbody');
  const panel = h('section', { class: 'panel', 'data-page': 'projects' },
    h('table', { class: 'projects' },
      h('thead', {}, h('tr', {}, ['Project', 'Flows', 'Created'].map((t) => h('th', { scope: 'col' }, t)))),
      body));
  const writable = await canWrite();
  root.replaceChildren(h('h1', {}, 'Projects'), writable ? createForm(refresh) : null, panel);

  async function refresh() {
    const projects = await api('/projects');
    const rows = projects.map((p) => h('tr', { 'data-project': p.name },
      h('td', {}, h('a', { href: `#/runs?project_name=${encodeURIComponent(p.name)}` }, p.name)),
      h('td', {}, String(p.flow_count)),
      h('td', {}, fmtTime(p.created))));
    if (!rows.length) {
      rows.push(h('tr', {}, h('td', { colspan: 3, class: 'muted empty' }, 'No projects yet: create one above, or '
        + 'with `headwater create project NAME`.')));
    }
    body.replaceChildren(...rows);
  }
  await refresh();
}

function createForm(refresh) {
  const input = h('input', { id: 'project-name', name: 'name', required: true, maxlength: 200, size: 28,
    'aria-describedby': 'project-name-error', placeholder: 'e.g. analytics' });
  const error = h('p', { class: 'field-error', id: 'project-name-error', role: 'alert' });
  const done = h('p', { class: 'muted small', role: 'status' });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Create project');
  const form = h('form', { class: 'create-project', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'project-name' }, 'New project'), input), button);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    done.textContent = '';
    const name = input.value.trim();
    if (!name) {
      error.textContent = 'Give the project a name.';
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      const made = await api('/projects', { method: 'POST', body: { name } });
      input.value = '';
      input.setAttribute('aria-invalid', 'false');
      done.textContent = `Created project ${made.name}.`;
      await refresh();
    } catch (failure) {
      error.textContent = failure.message;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  return h('section', { class: 'panel' }, form, error, done);
}
