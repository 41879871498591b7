// Viewer of the `params3d` renderer: ARKit-52 blendshapes + head rotation from the binary stream, rendered with
// three.js. Shows Fay's code-generated head (./head3d.js), or the persona's GLB (options.model: a URL) whose morph
// targets carry ARKit names; weights are applied by name to every mesh that has them, and the head angles to the
// model's head bone (a bone named like "Head"), or to the whole model.
//
// mount(container, ctx) -> {unmount(), player, trace, scene}; see web/app.js for ctx. window.fayAvatar points
// at the handle (tests read `trace`: [time ms, jawOpen shown] for every drawn frame).

import * as THREE from "/web/node_modules/three/build/three.module.js";
import { buildHead } from "./head3d.js";
import { FramePlayer, audioDelayOption } from "./stream.js";

const THREE_URL = "/web/node_modules/three/build/three.module.js";
const ADDONS_URL = "/web/node_modules/three/examples/jsm/";

// GLTFLoader imports "three" by name: map it to the same module this viewer uses (Chromium takes several maps).
function ensureImportMap() {
  if (document.querySelector("script[data-fay-three]")) return;
  const s = document.createElement("script");
  s.type = "importmap";
  s.dataset.fayThree = "1";
  s.textContent = JSON.stringify({ imports: { three: THREE_URL, "three/addons/": ADDONS_URL } });
  document.head.appendChild(s);
}

async function loadGLB(url) {
  ensureImportMap();
  const { GLTFLoader } = await import("three/addons/loaders/GLTFLoader.js");
  const gltf = await new GLTFLoader().loadAsync(url);
  return gltf.scene;
}

// A software WebGL (SwiftShader: headless browsers, machines without a GPU) draws far slower: skip the MSAA there.
function softwareGL() {
  try {
    const gl = document.createElement("canvas").getContext("webgl2");
    const ext = gl?.getExtension("WEBGL_debug_renderer_info");
    const name = ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : "";
    gl?.getExtension("WEBGL_lose_context")?.loseContext();
    return /swiftshader|llvmpipe|software/i.test(name);
  } catch {
    return false;
  }
}

function findHeadBone(root) {
  let found = null;
  root.traverse((o) => {
    if (!found && (o.isBone || o.type === "Bone") && /^(mixamorig:?)?head$/i.test(o.name)) found = o;
  });
  return found;
}

export async function mount(container, ctx) {
  const options = ctx.options || {};
  const canvas = document.createElement("canvas");
  canvas.className = "fay-avatar-3d";
  container.appendChild(canvas);
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: options.antialias ?? !softwareGL(), alpha: true });
  renderer.setPixelRatio(Math.min(2, window.devicePixelRatio || 1));
  renderer.outputColorSpace = THREE.SRGBColorSpace;
  const scene = new THREE.Scene();
  scene.add(new THREE.HemisphereLight(0xffffff, 0x8090a0, 1.6));
  const key = new THREE.DirectionalLight(0xffffff, 1.6);
  key.position.set(1.5, 2, 3);
  scene.add(key);
  const camera = new THREE.PerspectiveCamera(28, 1, 0.01, 100);

  let model, pivot, rest;
  if (options.model) {
    model = await loadGLB(options.model);
    scene.add(model);
    model.updateMatrixWorld(true);
    pivot = findHeadBone(model) || model;
    const target = new THREE.Vector3();
    if (pivot !== model) pivot.getWorldPosition(target);
    else new THREE.Box3().setFromObject(model).getCenter(target);
    const box = new THREE.Box3().setFromObject(model);
    const size = pivot !== model ? 0.55 : box.getSize(new THREE.Vector3()).y;
    target.y += pivot !== model ? 0.06 : 0;
    camera.position.set(target.x, target.y, target.z + size * 1.6);
    camera.lookAt(target);
  } else {
    model = buildHead(THREE);
    scene.add(model);
    pivot = model.userData.pivot;
    camera.position.set(0, -0.25, 6.2);
    camera.lookAt(0, -0.25, 0);
  }
  rest = pivot.quaternion.clone();

  // every mesh with morph targets: which of its influences each stream channel drives
  const meshes = [];
  model.traverse((o) => { if (o.isMesh && o.morphTargetDictionary) meshes.push(o); });
  let bound = null; // header the bindings were made for
  let bindings = [];
  const bind = (header) => {
    bindings = meshes.map((m) => {
      const pairs = [];
      header.channels.forEach((c, i) => {
        const k = m.morphTargetDictionary[c.name];
        if (k !== undefined) pairs.push(i, k);
      });
      return { m, pairs };
    });
    bound = header;
  };

  const player = new FramePlayer({ delayMs: audioDelayOption(options), peerConnection: ctx.peerConnection,
    mouthChannel: "jawOpen" });
  const off = ctx.onBinary ? ctx.onBinary((buf) => player.push(buf)) : null;
  const trace = [];
  const euler = new THREE.Euler();
  const q = new THREE.Quaternion();
  const DEG = Math.PI / 180;
  let raf = 0;
  let shown = null;

  const resize = () => {
    const w = container.clientWidth || 320, h = container.clientHeight || 320;
    renderer.setSize(w, h, false);
    camera.aspect = w / h;
    camera.updateProjectionMatrix();
  };
  const ro = new ResizeObserver(resize);
  ro.observe(container);
  resize();

  const draw = () => {
    raf = requestAnimationFrame(draw);
    const now = performance.now();
    const f = player.current(now);
    if (f && f !== shown) {
      if (bound !== f.header) bind(f.header);
      for (const { m, pairs } of bindings) {
        const inf = m.morphTargetInfluences;
        for (let j = 0; j < pairs.length; j += 2) inf[pairs[j + 1]] = f.values[pairs[j]];
      }
      const ix = f.header.index;
      const pitch = f.values[ix.headPitch] || 0, yaw = f.values[ix.headYaw] || 0, roll = f.values[ix.headRoll] || 0;
      euler.set(-pitch * DEG, yaw * DEG, roll * DEG, "YXZ");
      pivot.quaternion.copy(rest).multiply(q.setFromEuler(euler));
      shown = f;
    }
    renderer.render(scene, camera);
    trace.push([now, shown ? player.value("jawOpen", shown) : 0]);
    if (trace.length > 6000) trace.splice(0, 1000);
  };
  draw();

  const handle = {
    player, trace, scene, model, meshes,
    morphNames: [...new Set(meshes.flatMap((m) => Object.keys(m.morphTargetDictionary)))],
    unmount() {
      cancelAnimationFrame(raf);
      ro.disconnect();
      if (off) off();
      player.close();
      renderer.dispose();
      canvas.remove();
    },
  };
  window.fayAvatar = handle;
  return handle;
}
