// The application: the toolbar, the two views (detail: one matrix as labelled heatmap panels;
// overview: every layer and head of one probe example), the step slider and playback that
// drive both, tooltips, token highlighting, and following training as new steps arrive.

import { DIVERGING_LUT, VIRIDIS_LUT } from "./colormaps.js";
import {
  el,
  formatWeight,
  labelSpan,
  named,
  placeTooltip,
  safeFileName,
  save,
} from "./dom.js";
import { emptyState } from "./empty.js";
import { composeGridPng, composeGridSvg, composePng, composeSvg, matrixCsv } from "./export.js";
import { getJson, loadEntropy, loadMatrix, loadOverview, query } from "./http.js";
import {
  examplesOf,
  extent,
  groupTags,
  headValues,
  isSelfAttention,
  naturalOrder,
  nearestIndex,
  rollout,
  sameLabels,
  splitTag,
} from "./matrix.js";
import { Overview } from "./overview.js";
import { Panel, alignLayouts, layoutPanel } from "./panel.js";

export const POLL_MS = 5000; // how often ./tags is re-read so that new steps appear during training
const PLAY_MS = 450; // pause between two frames of the step animation
const PREFETCH_AFTER_MS = 150; // a rest on a step after which the overview reads its neighbours

export class AttentionApp {
  constructor(host) {
    this.tags = {}; // run -> tag -> info, as served by ./tags
    this.tagsJson = "";
    this.menuNames = null;
    this.run = null;
    this.tag = null;
    this.head = 0;
    this.steps = []; // [{step, wall_time}]
    this.stepIndex = -1;
    this.followLatest = true; // at the latest step: move on when new steps arrive
    this.compare = false;
    this.compareIndex = 0;
    this.scale = "auto";
    this.playing = false;
    this.playTimer = null;
    this.rendering = null;
    this.renderPending = false;
    this.refreshing = null;
    this.panels = [];
    this.mode = "detail"; // or "overview"
    this.overviewRoute = true; // false once the server says it has no overview route
    this.entropy = null; // {layer: [[step, value]]} of this.run, or null
    this.entropyRun = null;
    this.lastMain = null; // the matrix the detail view shows (for rollout's offer and CSV)
    this.build(host);
  }

  build(host) {
    this.runSelect = named("select", "run-select", { "aria-label": "run" });
    this.tagSelect = named("select", "tag-select", { "aria-label": "tag" });
    this.headSelect = named("select", "head-select", { "aria-label": "head" });
    this.headField = el("label", { hidden: "" }, "Head", this.headSelect);
    // One line of help for the aggregates, shown while one is chosen.
    this.headHelp = named("span", "head-help", { class: "help", hidden: "" });
    this.exampleSelect = named("select", "example-select", { "aria-label": "probe example" });
    this.exampleField = el("label", { hidden: "" }, "Example", this.exampleSelect);
    this.tagField = el("label", {}, "Tag", this.tagSelect);
    this.overviewButton = named("button", "mode-overview", {
      type: "button",
      class: "mode",
      text: "Overview",
      "aria-pressed": "false",
      title: "every layer and head of one probe example",
    });
    this.detailButton = named("button", "mode-detail", {
      type: "button",
      class: "mode",
      text: "Detail",
      "aria-pressed": "true",
      title: "one layer's matrix with its tokens",
    });
    this.scaleSelect = named("select", "scale-select", { "aria-label": "colour scale" });
    this.scaleSelect.append(
      el("option", { value: "auto", text: "min – max of the matrix" }),
      el("option", { value: "unit", text: "fixed 0 – 1" }),
    );
    this.playButton = named("button", "play-button", { type: "button", text: "▶ Play" });
    this.stepSlider = named("input", "step-slider", {
      type: "range",
      min: "0",
      max: "0",
      value: "0",
      "aria-label": "training step",
    });
    this.stepLabel = named("span", "step-label", { class: "step-label", text: "step –" });
    this.stepPosition = named("span", "step-position", { class: "step-position" });
    this.compareToggle = named("input", "compare-toggle", { type: "checkbox" });
    this.compareSlider = named("input", "compare-slider", {
      type: "range",
      min: "0",
      max: "0",
      value: "0",
      "aria-label": "reference step",
    });
    this.compareLabel = named("span", "compare-label", { class: "step-label" });
    this.compareField = el("span", { hidden: "" }, this.compareSlider, this.compareLabel);
    this.exportPng = named("button", "export-png", { type: "button", text: "Export PNG" });
    this.exportSvg = named("button", "export-svg", { type: "button", text: "Export SVG" });
    this.exportCsv = named("button", "export-csv", { type: "button", text: "Export CSV" });
    this.compareBox = el("label", {}, this.compareToggle, "Compare with");
    this.status = named("div", "status", { class: "status", role: "status" });
    this.empty = emptyState();
    this.view = named("div", "view", { class: "view" });
    this.tooltip = named("div", "tooltip", { class: "tooltip", role: "tooltip", hidden: "" });
    this.overview = new Overview((tag, head, heads) => this.openDetail(tag, head, heads));
    this.controls = el(
      "div",
      {},
      el(
        "div",
        { class: "toolbar" },
        el("span", { class: "modes" }, this.overviewButton, this.detailButton),
        el("label", {}, "Run", this.runSelect),
        this.exampleField,
        this.tagField,
        this.headField,
        el("label", {}, "Colour scale", this.scaleSelect),
        this.headHelp,
      ),
      el(
        "div",
        { class: "toolbar" },
        this.playButton,
        this.stepSlider,
        this.stepLabel,
        this.stepPosition,
        this.compareBox,
        this.compareField,
        el("span", { class: "spacer" }),
        this.exportPng,
        this.exportSvg,
        this.exportCsv,
      ),
    );
    this.root = named(
      "div",
      "attention-root",
      { class: "attn", "data-state": "loading" },
      this.controls,
      this.status,
      this.empty,
      this.view,
      this.overview.root,
      this.tooltip,
    );
    host.append(this.root);

    this.runSelect.addEventListener("change", () => this.chooseRun(this.runSelect.value));
    this.tagSelect.addEventListener("change", () => this.chooseTag(this.tagSelect.value));
    this.exampleSelect.addEventListener("change", () => this.chooseExample(this.exampleSelect.value));
    this.overviewButton.addEventListener("click", () => this.setMode("overview"));
    this.detailButton.addEventListener("click", () => this.setMode("detail"));
    this.headSelect.addEventListener("change", () => {
      const value = this.headSelect.value;
      this.head = ["mean", "max", "rollout"].includes(value) ? value : Number(value);
      this.updateHeadHelp();
      this.renderView();
    });
    this.scaleSelect.addEventListener("change", () => {
      this.scale = this.scaleSelect.value;
      this.renderView();
    });
    this.stepSlider.addEventListener("input", () => {
      this.setStepIndex(Number(this.stepSlider.value));
      this.renderView();
    });
    this.compareToggle.addEventListener("change", () => {
      this.compare = this.compareToggle.checked;
      this.compareField.hidden = !this.compare;
      this.renderView();
    });
    this.compareSlider.addEventListener("input", () => {
      this.compareIndex = Number(this.compareSlider.value);
      this.updateStepControls();
      this.renderView();
    });
    this.playButton.addEventListener("click", () => (this.playing ? this.stop() : this.play()));
    this.exportPng.addEventListener("click", () => this.downloadPng());
    this.exportSvg.addEventListener("click", () => this.downloadSvg());
    this.exportCsv.addEventListener("click", () => this.downloadCsv());
    let resizeFrame = 0;
    window.addEventListener("resize", () => {
      cancelAnimationFrame(resizeFrame);
      resizeFrame = requestAnimationFrame(() => this.renderView());
    });
    this.setControlsEnabled(false);
    this.setStatus("Loading…");
  }

  setStatus(text, isError = false) {
    this.status.textContent = text;
    this.status.classList.toggle("error", isError);
  }

  setControlsEnabled(enabled) {
    for (const control of [
      this.runSelect,
      this.tagSelect,
      this.exampleSelect,
      this.overviewButton,
      this.detailButton,
      this.headSelect,
      this.stepSlider,
      this.playButton,
      this.compareToggle,
      this.compareSlider,
      this.exportPng,
      this.exportSvg,
      this.exportCsv,
    ]) {
      control.disabled = !enabled;
    }
    // The step controls wait for the step list: the latest step may be painted before it.
    if (enabled) this.updateStepControls();
  }

  // ---- data refresh (initial load, polling, TensorBoard's reload)

  /**
   * Re-reads ./tags (or takes the given pending answer); keeps the user's run, tag, head and
   * step where they still exist.
   */
  refresh(pendingTags = null) {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh(pendingTags).finally(() => (this.refreshing = null));
    }
    return this.refreshing;
  }

  async doRefresh(pendingTags) {
    let tags;
    try {
      tags = await (pendingTags || getJson("./tags"));
    } catch (error) {
      this.setStatus(`Could not load the tag list: ${error.message}`, true);
      if (this.root.dataset.state === "loading") this.root.dataset.state = "error";
      return;
    }
    const json = JSON.stringify(tags);
    if (json === this.tagsJson) {
      // A step list that could not be loaded is asked for again at the next poll.
      if (this.tag && this.steps.length === 0) await this.loadSteps();
      return;
    }
    const previous = this.tags;
    this.tags = tags;
    this.tagsJson = json;
    const runs = Object.keys(tags).sort(naturalOrder);
    if (runs.length === 0) {
      this.root.dataset.state = "empty";
      this.empty.hidden = false;
      this.controls.hidden = true;
      this.view.replaceChildren();
      this.overview.root.hidden = true;
      this.panels = [];
      this.stop();
      this.setStatus("");
      return;
    }
    this.empty.hidden = true;
    this.controls.hidden = false;
    this.overview.root.hidden = this.mode !== "overview";
    if (this.runSelect.disabled) this.setControlsEnabled(true);
    if (!this.run || !tags[this.run]) this.run = runs[0];
    // Rebuild the menus only when names come or go: new steps alone leave them (and a menu
    // the user has open) alone.
    const names = JSON.stringify([runs, this.run, Object.keys(tags[this.run]).sort()]);
    if (names !== this.menuNames) {
      this.menuNames = names;
      this.fillRuns(runs);
      this.fillTags();
    }
    this.runSelect.value = this.run;
    const tagNames = Object.keys(tags[this.run]);
    if (!this.tag || !tags[this.run][this.tag]) {
      this.tag = groupTags(tagNames)[0].tags[0].tag;
      this.stop();
      this.resetSteps();
    }
    this.tagSelect.value = this.tag;
    this.exampleSelect.value = splitTag(this.tag)[1];
    const before = previous[this.run] && previous[this.run][this.tag];
    const now = tags[this.run][this.tag];
    if (!before || before.max_step !== now.max_step || before.num_steps !== now.num_steps ||
        this.steps.length === 0) {
      await this.loadSteps();
    } else {
      this.updateStepControls();
    }
  }

  fillRuns(runs) {
    this.runSelect.replaceChildren(...runs.map((run) => el("option", { value: run, text: run })));
  }

  fillTags() {
    const groups = groupTags(Object.keys(this.tags[this.run] || {}));
    const options = [];
    for (const { layer, tags } of groups) {
      const items = tags.map(({ tag, name }) => {
        // The full tag as text: a closed <select> shows no group name.
        const option = el("option", { value: tag, text: tag });
        option.dataset.example = name;
        return option;
      });
      if (layer) {
        const group = document.createElement("optgroup");
        group.label = layer; // a property: the layer name stays text
        group.append(...items);
        options.push(group);
      } else {
        options.push(...items);
      }
    }
    this.tagSelect.replaceChildren(...options);
    const examples = examplesOf(Object.keys(this.tags[this.run] || {}));
    this.exampleSelect.replaceChildren(
      ...examples.map((example) => el("option", { value: example, text: example })),
    );
    if (this.tag) this.exampleSelect.value = splitTag(this.tag)[1];
  }

  /**
   * The head menu: each head, the mean and the max of the heads, and attention rollout where
   * it is defined (a self-attention layer: its queries are its inputs, the same tokens).
   */
  fillHeads(heads, rolloutOffered) {
    this.headField.hidden = this.mode !== "detail" || (heads <= 1 && !rolloutOffered);
    const key = `${heads}:${rolloutOffered}`;
    if (this.headSelect.dataset.menu !== key) {
      this.headSelect.dataset.menu = key;
      this.headSelect.dataset.heads = String(heads);
      const options = [];
      for (let h = 0; h < heads; h++) {
        options.push(el("option", { value: String(h), text: heads > 1 ? `${h}` : "the head" }));
      }
      if (heads > 1) {
        options.push(el("option", { value: "mean", text: "mean of heads" }));
        options.push(el("option", { value: "max", text: "max of heads" }));
      }
      if (rolloutOffered) options.push(el("option", { value: "rollout", text: "attention rollout" }));
      this.headSelect.replaceChildren(...options);
    }
    const aggregate = ["mean", "max"].includes(this.head);
    if ((aggregate && heads <= 1) || (this.head === "rollout" && !rolloutOffered)) this.head = 0;
    if (!aggregate && this.head !== "rollout" && this.head >= heads) this.head = 0;
    this.headSelect.value = String(this.head);
    this.updateHeadHelp();
  }

  updateHeadHelp() {
    const help = {
      mean: "Mean of the heads: each cell averaged over the heads.",
      max: "Max of the heads: each cell's largest weight in any head.",
      rollout:
        "Attention rollout (Abnar & Zuidema 2020): per layer 0.5 × head mean + 0.5 × identity, " +
        "rows renormalised, multiplied through the consecutive self-attention layers up to this one.",
    }[this.head];
    this.headHelp.textContent = help || "";
    this.headHelp.hidden = !help || this.mode !== "detail";
  }

  async loadSteps() {
    const run = this.run;
    const tag = this.tag;
    const info = this.tags[run] && this.tags[run][tag];
    if (this.followLatest && info && this.mode === "detail" && this.head !== "rollout") {
      // The latest step is the default view: fetch it alongside the step list, and paint it
      // as soon as it is here if the list is not.
      loadMatrix(run, tag, info.max_step)
        .then((matrix) => {
          if (this.steps.length === 0 && run === this.run && tag === this.tag) {
            this.stepLabel.textContent = `step ${matrix.step}`;
            this.draw(matrix, null);
            this.setStatus(this.statusText(matrix, null));
            this.root.dataset.state = "ready";
          }
        })
        .catch(() => {}); // reported by renderView()
    }
    let steps;
    try {
      steps = await getJson(`./steps?${query({ run, tag })}`);
    } catch (error) {
      this.setStatus(`Could not load the steps of ${tag}: ${error.message}`, true);
      return;
    }
    if (run !== this.run || tag !== this.tag) return; // the user moved on meanwhile
    const current = this.steps[this.stepIndex];
    const reference = this.steps[this.compareIndex];
    this.steps = steps;
    const last = steps.length - 1;
    if (this.followLatest || !current) this.stepIndex = last;
    else this.stepIndex = nearestIndex(steps, current.step);
    this.compareIndex = reference ? nearestIndex(steps, reference.step) : 0;
    this.updateStepControls();
    await this.renderView();
  }

  chooseRun(run) {
    this.stop();
    this.run = run;
    this.menuNames = null;
    this.fillTags();
    const names = Object.keys(this.tags[run] || {});
    if (!names.includes(this.tag)) this.tag = names.length ? groupTags(names)[0].tags[0].tag : null;
    this.tagSelect.value = this.tag;
    if (this.tag) this.exampleSelect.value = splitTag(this.tag)[1];
    this.resetSteps();
    return this.loadSteps();
  }

  chooseTag(tag) {
    this.stop();
    this.tag = tag;
    this.exampleSelect.value = splitTag(tag)[1];
    this.resetSteps();
    return this.loadSteps();
  }

  /** The overview shows every layer of an example: steps follow its first layer's tag. */
  chooseExample(example) {
    const tags = Object.keys(this.tags[this.run] || {});
    const first = groupTags(tags)
      .flatMap((group) => group.tags)
      .find(({ name }) => name === example);
    if (!first) return null;
    this.tagSelect.value = first.tag;
    return this.chooseTag(first.tag);
  }

  setMode(mode) {
    this.applyMode(mode);
    return this.renderView();
  }

  /** Shows the controls and the view of mode ("detail" or "overview"); paints nothing. */
  applyMode(mode) {
    this.mode = mode;
    const overview = mode === "overview";
    this.overviewButton.setAttribute("aria-pressed", String(overview));
    this.detailButton.setAttribute("aria-pressed", String(!overview));
    this.root.dataset.mode = mode;
    this.exampleField.hidden = !overview;
    this.tagField.hidden = overview;
    this.compareBox.hidden = overview;
    this.compareField.hidden = overview || !this.compare;
    this.headHelp.hidden = overview || !this.headHelp.textContent;
    if (overview) this.headField.hidden = true;
    // The overview grid exports as PNG and SVG (export.js, composeGrid*); a grid is no table.
    this.exportCsv.hidden = overview;
    this.view.hidden = overview;
    this.overview.root.hidden = !overview;
    this.hideTooltip();
    this.overview.unhover();
  }

  /** From an overview thumbnail to the detail view of its layer and head, at the same step. */
  openDetail(tag, head, heads) {
    this.stop();
    this.head = Number(heads) > 1 ? head : 0;
    const changed = tag !== this.tag;
    this.tag = tag;
    this.tagSelect.value = tag;
    this.applyMode("detail");
    // loadSteps keeps the step: the new tag's step nearest to the one shown.
    return changed ? this.loadSteps() : this.renderView();
  }

  resetSteps() {
    this.steps = [];
    this.stepIndex = -1;
    this.compareIndex = 0;
    this.followLatest = true;
    // Until the new list comes, Play and the sliders would act on nothing: disable them.
    this.updateStepControls();
  }

  setStepIndex(index) {
    this.stepIndex = Math.min(Math.max(0, index), this.steps.length - 1);
    this.followLatest = this.stepIndex === this.steps.length - 1;
    this.updateStepControls();
  }

  updateStepControls() {
    const last = Math.max(0, this.steps.length - 1);
    for (const slider of [this.stepSlider, this.compareSlider]) {
      slider.max = String(last);
      slider.disabled = this.steps.length < 2;
    }
    this.stepSlider.value = String(Math.max(0, this.stepIndex));
    this.compareSlider.value = String(this.compareIndex);
    const step = this.steps[this.stepIndex];
    this.stepLabel.textContent = step ? `step ${step.step}` : "step –";
    this.stepLabel.title = step ? new Date(step.wall_time * 1000).toLocaleString() : "";
    this.stepPosition.textContent = step ? `${this.stepIndex + 1} / ${this.steps.length}` : "";
    const reference = this.steps[this.compareIndex];
    this.compareLabel.textContent = reference ? `step ${reference.step}` : "";
    this.playButton.disabled = this.steps.length < 2;
  }

  // ---- playback

  play() {
    if (this.steps.length < 2) return;
    this.playing = true;
    this.playButton.textContent = "❚❚ Pause";
    this.playButton.classList.add("playing");
    if (this.stepIndex >= this.steps.length - 1) this.setStepIndex(0);
    this.renderView().then(() => this.scheduleFrame());
  }

  scheduleFrame() {
    clearTimeout(this.playTimer);
    if (!this.playing) return;
    this.playTimer = setTimeout(async () => {
      if (!this.playing) return;
      if (this.stepIndex >= this.steps.length - 1) {
        this.stop();
        return;
      }
      this.setStepIndex(this.stepIndex + 1);
      await this.renderView();
      this.scheduleFrame();
    }, PLAY_MS);
  }

  stop() {
    this.playing = false;
    clearTimeout(this.playTimer);
    this.playButton.textContent = "▶ Play";
    this.playButton.classList.remove("playing");
  }

  // ---- drawing

  /**
   * Paints the view for the current selection. Calls made while a paint is loading coalesce
   * into one more paint of the latest selection, so scrubbing the slider over many large
   * matrices never queues a request per intermediate step.
   */
  renderView() {
    if (this.rendering) {
      this.renderPending = true;
      return this.rendering;
    }
    this.rendering = (async () => {
      do {
        this.renderPending = false;
        await this.renderOnce();
      } while (this.renderPending);
    })().finally(() => (this.rendering = null));
    return this.rendering;
  }

  async renderOnce() {
    if (this.mode === "overview") {
      await this.renderOverview();
      return;
    }
    const run = this.run;
    const tag = this.tag;
    const current = this.steps[this.stepIndex];
    if (!run || !tag || !current) return;
    const reference = this.compare ? this.steps[this.compareIndex] : null;
    if (this.head === "rollout") {
      // Rollout stays chosen from layer to layer where it is defined (self-attention);
      // elsewhere the menu does not offer it, and the first head is shown.
      try {
        if (!isSelfAttention(await loadMatrix(run, tag, current.step))) this.head = 0;
      } catch {
        // reported below
      }
    }
    const load = (step) =>
      this.head === "rollout" ? this.loadRollout(run, tag, step) : loadMatrix(run, tag, step);
    let main;
    let ref = null;
    try {
      [main, ref] = await Promise.all([load(current.step), reference ? load(reference.step) : null]);
    } catch (error) {
      if (error.status === 404 && /no such route/.test(error.message)) this.overviewRoute = false;
      if (this.head === "rollout") {
        // Not computable after all (a layer missing at this step, no overview route):
        // say why and show the mean of the heads instead.
        this.head = "mean";
        await this.renderOnce();
        this.setStatus(`Attention rollout is not available here: ${error.message}`, true);
        return;
      }
      this.setStatus(`Could not load the matrix: ${error.message}`, true);
      return;
    }
    if (this.playing && this.stepIndex + 1 < this.steps.length) {
      load(this.steps[this.stepIndex + 1].step).catch(() => {});
    }
    if (this.mode !== "detail") return;
    this.draw(main, ref);
    this.setStatus(this.statusText(main, ref));
    this.root.dataset.state = "ready";
  }

  /**
   * Attention rollout at tag's layer and step, as a one-head matrix: the layers come from GET
   * overview (in the model's order), so rollout multiplies through the right neighbours.
   */
  async loadRollout(run, tag, step) {
    const data = await loadOverview(run, splitTag(tag)[1], step);
    const index = data.layers.findIndex((layer) => layer.tag === tag);
    if (index < 0) throw new Error(`${tag} has no step ${step} beside the example's other layers`);
    const result = rollout(data.layers, index);
    if (!result) throw new Error(`${tag} is not self-attention (its queries are not its inputs)`);
    const layer = data.layers[index];
    return {
      ...layer,
      heads: 1,
      storedHeads: layer.heads,
      values: result.values,
      rolloutLayers: [data.layers[result.first].layer, layer.layer],
      bytes: 0,
    };
  }

  async renderOverview() {
    const run = this.run;
    const current = this.steps[this.stepIndex];
    if (!run || !this.tag || !current) return;
    const example = splitTag(this.tag)[1];
    let data;
    try {
      [data] = await Promise.all([loadOverview(run, example, current.step), this.ensureEntropy(run)]);
    } catch (error) {
      this.setStatus(`Could not load the overview of example ${example}: ${error.message}`, true);
      return;
    }
    if (this.mode !== "overview" || run !== this.run) return;
    this.overview.paint(data, this.entropy, this.scale);
    let text = `example ${example} · ${data.layers.length} layers at step ${data.step}`;
    if (data.missing.length) text += ` · no step ${data.step} in: ${data.missing.join(", ")}`;
    if (data.errors.length) text += ` · unreadable: ${data.errors.map((e) => e.tag).join(", ")}`;
    text += " · hover a cell to enlarge it, click it for details";
    this.setStatus(text);
    this.root.dataset.state = "ready";
    // A whole model's step is one large answer (2.4 MB of codes for 24 layers x 12 heads of
    // 64 x 64) that the server needs a hundred milliseconds or more to gather: fetch the
    // neighbouring steps meanwhile, so that playback and the slider's arrow keys find them
    // ready. During playback at once; otherwise once the view has rested on this step for
    // PREFETCH_AFTER_MS, so that dragging the slider across many steps does not make the
    // server gather neighbours nobody looks at while the step wanted next waits behind them.
    clearTimeout(this.prefetchTimer);
    const index = this.stepIndex;
    const prefetch = () => {
      if (this.mode !== "overview" || run !== this.run || index !== this.stepIndex) return;
      for (const offset of this.playing ? [1] : [1, -1]) {
        const next = this.steps[index + offset];
        if (next) loadOverview(run, example, next.step).catch(() => {});
      }
    };
    if (this.playing) prefetch();
    else this.prefetchTimer = setTimeout(prefetch, PREFETCH_AFTER_MS);
  }

  /** The run's mean-entropy lines, re-read when the tag list changes (new steps). */
  async ensureEntropy(run) {
    const key = `${run}\n${this.tagsJson}`;
    if (this.entropyKey === key) return;
    try {
      this.entropy = await loadEntropy(run);
    } catch {
      this.entropy = null; // no scalars logged, or an older server: no lines, nothing else lost
    }
    this.entropyKey = key;
  }

  statusText(main, ref) {
    const heads = (main.storedHeads || main.heads) > 1 ? `, ${main.storedHeads || main.heads} heads` : "";
    let text = `rows: ${main.rows} queries × columns: ${main.cols} inputs${heads}`;
    if (main.rolloutLayers) {
      const [first, last] = main.rolloutLayers;
      text += first === last ? ` · rollout of ${last} alone` : ` · rollout from ${first} to ${last}`;
    }
    if (ref && (ref.rows !== main.rows || ref.cols !== main.cols)) {
      text += ` · step ${ref.step} is ${ref.rows} × ${ref.cols}: no difference shown`;
    } else if (ref && !sameLabels(ref, main)) {
      text += " · the two steps have different tokens: the difference is by position";
    }
    return text;
  }

  specsFor(main, ref) {
    const heads = main.storedHeads || main.heads;
    this.fillHeads(heads, isSelfAttention(main) && this.overviewRoute);
    const head = this.head;
    const mainValues = headValues(main, head);
    const headText =
      {
        mean: " · mean of heads",
        max: " · max of heads",
        rollout: " · attention rollout",
      }[head] || (heads > 1 ? ` · head ${head}` : "");
    const specs = [];
    let [lo, hi] = this.scale === "unit" ? [0, 1] : extent(mainValues);
    let refValues = null;
    if (ref) {
      refValues = headValues(ref, head);
      if (this.scale !== "unit") {
        const [rlo, rhi] = extent(refValues);
        lo = Math.min(lo, rlo);
        hi = Math.max(hi, rhi);
      }
    }
    const base = (matrix, values, title) => ({
      title,
      values,
      rows: matrix.rows,
      cols: matrix.cols,
      queryLabels: matrix.queryLabels,
      inputLabels: matrix.inputLabels,
      lut: VIRIDIS_LUT,
      lo,
      hi,
      step: matrix.step,
      extra: () => [],
    });
    if (ref) specs.push({ role: "reference", ...base(ref, refValues, `step ${ref.step}${headText}`) });
    specs.push({ role: "main", ...base(main, mainValues, `step ${main.step}${headText}`) });
    if (ref && ref.rows === main.rows && ref.cols === main.cols) {
      const diff = new Float32Array(mainValues.length);
      let bound = 0;
      for (let i = 0; i < diff.length; i++) {
        diff[i] = mainValues[i] - refValues[i];
        bound = Math.max(bound, Math.abs(diff[i]));
      }
      bound = bound || 1e-6;
      specs.push({
        role: "diff",
        ...base(main, diff, `difference: step ${main.step} − step ${ref.step}${headText}`),
        lut: DIVERGING_LUT,
        lo: -bound,
        hi: bound,
        isDifference: true,
        extra: (i, j) => [
          [`step ${ref.step}`, formatWeight(refValues[i * main.cols + j])],
          [`step ${main.step}`, formatWeight(mainValues[i * main.cols + j])],
        ],
      });
    }
    return specs;
  }

  draw(main, ref) {
    this.lastMain = main;
    const specs = this.specsFor(main, ref);
    const roles = specs.map((s) => s.role).join(",");
    if (this.panels.map((p) => p.role).join(",") !== roles) {
      const handlers = {
        hover: (...args) => this.showTooltip(...args),
        leave: () => this.hideTooltip(),
        label: (...args) => this.showLabelTip(...args),
      };
      this.panels = specs.map((s) => new Panel(s.role, handlers));
      this.view.replaceChildren(...this.panels.map((p) => p.root));
    }
    const gap = 24;
    const width = Math.max(320, this.view.clientWidth || window.innerWidth - 32);
    const widthBudget = (width - gap * (specs.length - 1)) / specs.length;
    const top = this.view.getBoundingClientRect().top;
    const heightBudget = Math.max(240, window.innerHeight - top - 36);
    const layouts = alignLayouts(specs.map((spec) => layoutPanel(spec, widthBudget, heightBudget)));
    specs.forEach((spec, k) => {
      const canvas = this.panels[k].canvas;
      // DOM signals of what is on screen, for tests and benchmarks.
      canvas.dataset.run = this.run;
      canvas.dataset.tag = this.tag;
      canvas.dataset.head = String(this.head);
      this.panels[k].paint(spec, layouts[k]);
    });
    this.hideTooltip();
  }

  // ---- tooltip and token highlight

  /** Highlights query row i and input column j (null: not that axis) in every panel. */
  highlight(i, j) {
    for (const panel of this.panels) panel.highlight(i, j);
  }

  tooltipLine(key, label, position = null, cls = "") {
    const row = el("div");
    row.append(el("span", { class: "key", text: key }));
    // The token in its own direction isolate, apart from the text around it.
    row.append(label === null ? el("span", { class: cls }) : labelSpan(label, cls));
    if (position !== null) row.append(el("span", { class: "position", text: `(#${position})` }));
    return row;
  }

  showTooltip(panel, [i, j], event) {
    const spec = panel.spec;
    const value = spec.values[i * spec.cols + j];
    const lines = [
      this.tooltipLine("query", spec.queryLabels[i], i, "token"),
      this.tooltipLine("input", spec.inputLabels[j], j, "token"),
    ];
    for (const [key, text] of spec.extra(i, j)) {
      const row = this.tooltipLine(key, null);
      row.lastChild.textContent = text;
      lines.push(row);
    }
    const shown = spec.isDifference ? (value >= 0 ? "+" : "") + formatWeight(value) : formatWeight(value);
    const valueLine = this.tooltipLine(spec.isDifference ? "change" : "weight", null, null, "value");
    valueLine.lastChild.textContent = shown;
    lines.push(valueLine);
    this.tooltip.replaceChildren(...lines);
    this.tooltip.dataset.row = String(i);
    this.tooltip.dataset.col = String(j);
    this.tooltip.dataset.axis = "cell";
    placeTooltip(this.tooltip, event.clientX, event.clientY);
    this.highlight(i, j);
  }

  /** Hovering a row (query) or column (input) label: its exact token, and its highlight. */
  showLabelTip(panel, axis, index, event) {
    const spec = panel.spec;
    const label = axis === "query" ? spec.queryLabels[index] : spec.inputLabels[index];
    this.tooltip.replaceChildren(this.tooltipLine(axis, label, index, "token"));
    this.tooltip.dataset.axis = axis;
    this.tooltip.dataset.row = axis === "query" ? String(index) : "";
    this.tooltip.dataset.col = axis === "input" ? String(index) : "";
    placeTooltip(this.tooltip, event.clientX, event.clientY);
    if (axis === "query") this.highlight(index, null);
    else this.highlight(null, index);
  }

  hideTooltip() {
    this.tooltip.hidden = true;
    this.highlight(null, null);
  }

  // ---- export

  fileStem() {
    const step = this.steps[this.stepIndex];
    const head = this.headField.hidden ? "" : `_head${this.head}`;
    return safeFileName(`attention_${this.run}_${this.tag}${head}_step${step ? step.step : ""}`);
  }

  shownPanels() {
    return this.panels.filter((p) => p.spec);
  }

  /** The overview grid's file name and heading: run, example, step and colour scale. */
  gridHeading() {
    const grid = this.overview.snapshot();
    if (!grid) return null;
    const example = grid.example; // the painted one, not a choice still loading
    const scale = this.scale === "unit" ? "all heads on 0–1" : "each head on its own min–max";
    return {
      grid,
      heading: `${this.run} · example ${example} · step ${grid.step} · viridis, ${scale}`,
      stem: safeFileName(`attention_overview_${this.run}_example${example}_step${grid.step}`),
    };
  }

  downloadPng() {
    if (this.mode === "overview") {
      const shown = this.gridHeading();
      if (!shown) return;
      composeGridPng(shown.grid, shown.heading).toBlob((blob) => {
        if (blob) save(URL.createObjectURL(blob), `${shown.stem}.png`, true);
      }, "image/png");
      return;
    }
    const panels = this.shownPanels();
    if (!panels.length) return;
    composePng(panels, `${this.run} · ${this.tag}`).toBlob((blob) => {
      if (blob) save(URL.createObjectURL(blob), `${this.fileStem()}.png`, true);
    }, "image/png");
  }

  downloadSvg() {
    if (this.mode === "overview") {
      const shown = this.gridHeading();
      if (!shown) return;
      const blob = new Blob([composeGridSvg(shown.grid, shown.heading)], { type: "image/svg+xml" });
      save(URL.createObjectURL(blob), `${shown.stem}.svg`, true);
      return;
    }
    const panels = this.shownPanels();
    if (!panels.length) return;
    const text = composeSvg(panels, `${this.run} · ${this.tag}`);
    const blob = new Blob([text], { type: "image/svg+xml" });
    save(URL.createObjectURL(blob), `${this.fileStem()}.svg`, true);
  }

  /**
   * The CSV of what is shown: every head of the stored matrix when a head is chosen, else the
   * aggregate (mean, max, rollout) as one matrix. Token cells are made spreadsheet-safe
   * (export.js, csvCell); the raw tokens stay available from GET matrix.
   */
  downloadCsv() {
    const main = this.lastMain;
    const panel = this.panels.find((p) => p.role === "main");
    if (!main || !panel || !panel.spec) return;
    const matrix =
      typeof this.head === "number" && !main.rolloutLayers
        ? main
        : { ...main, heads: 1, values: panel.spec.values };
    const blob = new Blob([matrixCsv(matrix)], { type: "text/csv" });
    save(URL.createObjectURL(blob), `${this.fileStem()}.csv`, true);
  }
}
