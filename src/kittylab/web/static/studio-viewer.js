// KittyLab console, the CAD studio's 3D view (issue 18): each `.viewer[data-stl]` shows its
// STL with three.js (vendored: the core, STLLoader, OrbitControls), Z up as in CAD, on a
// 10 mm grid, lit from the camera. It draws on demand (when turned, zoomed or resized),
// not every frame. Without WebGL it shows the part's preview picture instead.
//
// For tests and the benchmark each viewer records `data-state` (loading, drawn, failed),
// when it started, had the STL, had parsed it and drew its first frame (`data-start-ms`,
// `data-fetched-ms`, `data-parsed-ms`, `data-first-frame-ms`: since the page began to
// load) and offers `element.kittyViewer.sample()`: the share of its pixels that are not
// background, read back right after a fresh draw.
import * as THREE from "three";
import { STLLoader } from "/console/static/vendor/three/STLLoader.js";
import { OrbitControls } from "/console/static/vendor/three/OrbitControls.js";

const PART_COLOUR = 0xe07a1f;
const GRID_CELL_MM = 10;

function css(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

function fallback(el, message) {
  el.dataset.state = "failed";
  el.innerHTML = "";
  if (el.dataset.preview) {
    const img = document.createElement("img");
    img.src = el.dataset.preview;
    img.alt = "preview of the part";
    img.className = "result-preview";
    el.append(img);
  }
  const p = document.createElement("p");
  p.className = "viewer-status";
  p.textContent = message;
  el.append(p);
}

function frame(camera, controls, part) {
  // Look at the part from the front right, above, far enough to see all of it.
  const sphere = part.geometry.boundingSphere;
  const radius = Math.max(sphere.radius, 1);
  const distance = (radius / Math.sin(THREE.MathUtils.degToRad(camera.fov / 2))) * 1.15;
  const target = sphere.center.clone();
  const direction = new THREE.Vector3(1, -1.3, 0.9).normalize();
  camera.position.copy(target).addScaledVector(direction, distance);
  camera.near = distance / 100;
  camera.far = distance * 20;
  camera.updateProjectionMatrix();
  controls.target.copy(target);
  controls.update();
}

function mark(el, name) {
  el.dataset[name] = String(Math.round(performance.now()));
}

async function show(el) {
  const started = performance.now();
  mark(el, "startMs");
  el.dataset.state = "loading";
  // The file is asked for at once (the page preloads it); the renderer is made meanwhile.
  const download = fetch(el.dataset.stl, { credentials: "same-origin" });
  download.catch(function () {}); // a failure is reported where it is awaited
  let renderer;
  try {
    renderer = new THREE.WebGLRenderer({ antialias: true, alpha: false });
  } catch (error) {
    fallback(el, "This browser cannot show 3D here (no WebGL): the preview picture instead.");
    return;
  }
  let geometry;
  try {
    const response = await download;
    if (!response.ok) throw new Error("the server answered " + response.status);
    const data = await response.arrayBuffer();
    mark(el, "fetchedMs");
    geometry = new STLLoader().parse(data);
    mark(el, "parsedMs");
  } catch (error) {
    renderer.dispose();
    fallback(el, "The 3D view could not load the STL (" + error.message + "): the preview picture instead.");
    return;
  }
  // Stand the part on the grid, centred on it.
  geometry.computeBoundingBox();
  const box = geometry.boundingBox;
  geometry.translate(-(box.min.x + box.max.x) / 2, -(box.min.y + box.max.y) / 2, -box.min.z);
  geometry.computeBoundingSphere();
  if (!geometry.getAttribute("normal")) geometry.computeVertexNormals();

  const background = new THREE.Color(css("--bg", "#f4f5f7"));
  const scene = new THREE.Scene();
  scene.background = background;
  const material = new THREE.MeshStandardMaterial({ color: PART_COLOUR, roughness: 0.55, metalness: 0.05 });
  const part = new THREE.Mesh(geometry, material);
  scene.add(part);
  const size = new THREE.Vector3();
  geometry.boundingBox.getSize(size);
  const span = Math.max(GRID_CELL_MM * 4, Math.ceil((Math.max(size.x, size.y) * 1.6) / GRID_CELL_MM) * GRID_CELL_MM);
  const grid = new THREE.GridHelper(span, Math.min(200, span / GRID_CELL_MM), 0x7b8494, 0xb9c0cb);
  grid.rotation.x = Math.PI / 2; // the grid lies in X-Y: Z is up
  scene.add(grid);
  scene.add(new THREE.HemisphereLight(0xffffff, 0x445566, 1.4));
  const camera = new THREE.PerspectiveCamera(35, 1, 0.1, 10000);
  camera.up.set(0, 0, 1);
  const key = new THREE.DirectionalLight(0xffffff, 1.6);
  key.position.set(0.4, 0.6, 1);
  camera.add(key); // lit from where one looks
  scene.add(camera);

  el.innerHTML = "";
  const canvas = renderer.domElement;
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", el.dataset.label || "3D view of the part");
  el.append(canvas);
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  const controls = new OrbitControls(camera, canvas);
  controls.listenToKeyEvents(canvas); // arrow keys move the view when it has focus

  function render() {
    renderer.render(scene, camera);
  }
  function resize() {
    const width = Math.max(1, el.clientWidth);
    const height = Math.max(1, el.clientHeight);
    renderer.setSize(width, height, false);
    camera.aspect = width / height;
    camera.updateProjectionMatrix();
    render();
  }
  controls.addEventListener("change", render);
  new ResizeObserver(resize).observe(el);
  frame(camera, controls, part);
  resize();
  el.dataset.state = "drawn";
  mark(el, "firstFrameMs");
  el.dataset.loadMs = String(Math.round(performance.now() - started));
  el.dataset.triangles = String(geometry.getAttribute("position").count / 3);

  el.kittyViewer = {
    reset: function () { frame(camera, controls, part); render(); },
    sample: function () {
      // Read back right after a draw: the buffer is only defined until it is shown.
      render();
      const gl = renderer.getContext();
      const w = gl.drawingBufferWidth;
      const h = gl.drawingBufferHeight;
      const pixels = new Uint8Array(w * h * 4);
      gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, pixels);
      const hex = background.getHex(); // sRGB, as drawn
      const bg = [(hex >> 16) & 255, (hex >> 8) & 255, hex & 255];
      let other = 0;
      let part = 0;
      for (let i = 0; i < pixels.length; i += 4) {
        const d = Math.abs(pixels[i] - bg[0]) + Math.abs(pixels[i + 1] - bg[1]) + Math.abs(pixels[i + 2] - bg[2]);
        if (d > 24) other += 1;
        // the part's orange: much more red than blue
        if (pixels[i] - pixels[i + 2] > 60) part += 1;
      }
      return { width: w, height: h, notBackground: other / (w * h), part: part / (w * h) };
    },
  };
}

function start(root) {
  root.querySelectorAll(".viewer[data-stl]").forEach(function (el) {
    if (el.dataset.state) return;
    el.dataset.state = "queued";
    show(el).catch(function (error) {
      fallback(el, "The 3D view failed (" + error.message + ").");
    });
  });
}

document.addEventListener("click", function (event) {
  const button = event.target.closest("[data-reset-view]");
  if (!button) return;
  const viewer = button.closest(".result-card").querySelector(".viewer");
  if (viewer && viewer.kittyViewer) viewer.kittyViewer.reset();
});
// A provider's result arrives by htmx when it is done: its viewer starts then.
document.body.addEventListener("htmx:load", function (event) { start(event.detail.elt); });
start(document);
