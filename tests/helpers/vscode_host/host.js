// The part of VS Code's Jupyter extension that renders widget outputs, reduced to what a test
// needs: a kernel connection, VS Code's WidgetManager (@vscode/jupyter-ipywidgets8 or 7), third-party
// widget modules registered in requirejs from the kernel environment's nbextensions (where VS
// Code finds anywidget's front end), and each widget output shown the way VS Code's renderer
// does it (the model, then a view in the output's element, then display_view).
// `index.html?ipywidgets=7` loads VS Code's bundle for kernels with ipywidgets 7, else 8's.
const WIDGET_VIEW = "application/vnd.jupyter.widget-view+json";
const major = new URLSearchParams(location.search).get("ipywidgets") === "7" ? 7 : 8;
const host = { failures: [], major };
window.vscodeHost = host;

const { activate } = await import(`./ipywidgets${major}.js`);
activate();
window[`vscIPyWidgets${major}`].load();
// VS Code maps the old module name to the new one before it registers any widget script.
window.requirejs.config({ map: { "*": { "jupyter-js-widgets": "@jupyter-widgets/base" } } });
host.ready = true;

host.start = async (server, kernelName = "python3") => {
  const { KernelManager, ServerConnection } = window.jlservices;
  const serverSettings = ServerConnection.makeSettings({
    baseUrl: server, wsUrl: server.replace(/^http/, "ws"), token: "", appendToken: false,
  });
  const kernels = new KernelManager({ serverSettings });
  await kernels.ready;
  host.kernel = await kernels.startNew({ name: kernelName });
  const scriptLoader = {
    widgetsRegisteredInRequireJs: new Set(),
    async loadWidgetScript(moduleName) {
      window.requirejs.config({ paths: { [moduleName]: `nbextensions/${moduleName}/index` } });
    },
    successHandler() {},
    errorHandler(className, moduleName, moduleVersion, error) {
      host.failures.push(`widget class ${moduleName}.${className}@${moduleVersion}: ${error}`);
    },
  };
  const outputs = document.getElementById("outputs");
  host.manager = new window.vscIPyWidgets.WidgetManager(
    host.kernel, outputs, scriptLoader, () => {});
  return host.kernel.id;
};

async function renderWidget(data, el) {
  const model = await host.manager.get_model(data.model_id);
  const view = await host.manager.create_view(model, { el });
  return host.manager.display_view(data, view, { node: el });
}

function appendText(cell, text, className = "") {
  const pre = document.createElement("pre");
  pre.className = className;
  pre.textContent = text;
  cell.appendChild(pre);
}

// Execute `code` as one cell; resolve once the kernel is done and every widget output is shown.
host.run = async (code) => {
  const cell = document.createElement("div");
  cell.className = "cell";
  document.getElementById("outputs").appendChild(cell);
  const renders = [];
  const future = host.kernel.requestExecute({ code });
  future.onIOPub = (msg) => {
    const type = msg.header.msg_type;
    const content = msg.content;
    if (type === "display_data" || type === "execute_result") {
      if (content.data[WIDGET_VIEW]) {
        const el = document.createElement("div");
        el.className = "widget-output";
        cell.appendChild(el);
        renders.push(renderWidget(content.data[WIDGET_VIEW], el).catch((error) => {
          host.failures.push(`display ${content.data[WIDGET_VIEW].model_id}: ${error}`);
        }));
      } else if (content.data["text/plain"]) {
        appendText(cell, content.data["text/plain"]);
      }
    } else if (type === "stream") {
      appendText(cell, content.text);
    } else if (type === "error") {
      host.failures.push(`${content.ename}: ${content.evalue}`);
      appendText(cell, `${content.ename}: ${content.evalue}`, "error");
    }
  };
  const reply = await future.done;
  await Promise.all(renders);
  return reply.content.status;
};
