// Viewer of the `live2d` renderer: Cubism parameters from the binary stream, applied to the persona's Live2D
// model (options.model: URL of a *.model3.json) with pixi-live2d-display on PixiJS 6 and the Cubism Core.
//
// The model's own idle motions and automatic blinking are turned off: blinks, breathing, head and mouth all come
// from the server's timeline, so they stay in step with the audio. Options: scale, x, y (placement), motions
// (true keeps the model's idle motions underneath), frame and top (the share of the model's canvas height shown,
// and how much of it is above the view).
//
// mount(container, ctx) -> {unmount(), player, trace, model}; window.fayAvatar points at the handle.

import { FramePlayer, audioDelayOption } from "./stream.js";

const NM = "/web/node_modules";
const SCRIPTS = [
  `${NM}/live2dcubismcore/live2dcubismcore.min.js`, // Live2D Cubism Core (Live2D Proprietary Software License)
  `${NM}/pixi.js/dist/browser/pixi.min.js`,
  `${NM}/pixi-live2d-display/dist/cubism4.min.js`,
];

function loadScript(src) {
  return new Promise((resolve, reject) => {
    if (document.querySelector(`script[data-fay-src="${src}"]`)) return resolve();
    const s = document.createElement("script");
    s.src = src;
    s.dataset.faySrc = src;
    s.onload = () => resolve();
    s.onerror = () => reject(new Error(`could not load ${src} (run 'make web-deps')`));
    document.head.appendChild(s);
  });
}

export async function mount(container, ctx) {
  const options = ctx.options || {};
  if (!options.model) throw new Error("the live2d renderer needs persona avatar.model: the URL of a .model3.json");
  for (const src of SCRIPTS) await loadScript(src); // in order: each needs the one before
  const PIXI = window.PIXI;
  const canvas = document.createElement("canvas");
  canvas.className = "fay-avatar-live2d";
  container.appendChild(canvas);
  const app = new PIXI.Application({ view: canvas, backgroundAlpha: 0, antialias: true, autoStart: true,
    resizeTo: container });
  const model = await PIXI.live2d.Live2DModel.from(options.model, { autoInteract: false });
  app.stage.addChild(model);
  const internal = model.internalModel;
  if (!options.motions) {
    internal.motionManager.stopAllMotions();
    internal.motionManager.update = () => false; // no idle motions: the stream moves the model
  }
  internal.eyeBlink = undefined; // blinks come from the stream
  // frame head and shoulders: the part of the model's canvas from `top` (default 5%) down `frame` (default 34%)
  // of its height fills the view
  const place = () => {
    const w = container.clientWidth || 320, h = container.clientHeight || 320;
    const mw = model.internalModel.width, mh = model.internalModel.height;
    const top = options.top ?? 0.05, frame = options.frame ?? 0.34;
    const scale = (options.scale ?? 1) * Math.min(w / (mw * 0.6), h / (mh * frame));
    model.scale.set(scale);
    model.x = w / 2 - (mw * scale) / 2 + (options.x ?? 0);
    model.y = (options.y ?? 0) - mh * scale * top;
  };
  place();
  const ro = new ResizeObserver(place);
  ro.observe(container);

  const player = new FramePlayer({ delayMs: audioDelayOption(options), peerConnection: ctx.peerConnection,
    mouthChannel: "ParamMouthOpenY" });
  const off = ctx.onBinary ? ctx.onBinary((buf) => player.push(buf)) : null;
  const core = internal.coreModel;
  const trace = [];
  let bound = null, ids = [];
  let mouth = 0;
  // after motions and physics inputs, before the model is updated and drawn
  const apply = () => {
    const now = performance.now();
    const f = player.current(now);
    if (f) {
      if (bound !== f.header) {
        ids = f.header.channels.map((c) => (core.getParameterIndex(c.name) >= 0 ? c.name : null));
        bound = f.header;
      }
      for (let i = 0; i < ids.length; i++) if (ids[i]) core.setParameterValueById(ids[i], f.values[i]);
      mouth = player.value("ParamMouthOpenY", f);
    }
    trace.push([now, f ? mouth : 0]);
    if (trace.length > 6000) trace.splice(0, 1000);
  };
  internal.on("beforeModelUpdate", apply);

  const handle = {
    player, trace, model, app,
    parameter: (id) => core.getParameterValueById(id),
    unmount() {
      internal.off("beforeModelUpdate", apply);
      ro.disconnect();
      if (off) off();
      player.close();
      app.destroy(true, { children: true });
    },
  };
  window.fayAvatar = handle;
  return handle;
}
