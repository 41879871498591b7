// Viewer of the `video2d` renderer: the server draws the talking portrait (with its "AI-generated" label) and
// sends it as the WebRTC video track; this shows ctx.videoStream in a <video> element. Audio and video are
// synchronised by the browser's WebRTC stack (RTCP sender reports), from frames released by the playout clock.

export async function mount(container, ctx) {
  const video = document.createElement("video");
  video.className = "fay-avatar-video";
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true; // the answer audio plays in ctx.audioElement
  video.style.objectFit = "contain"; // the whole frame, its "AI-generated" mark included
  container.appendChild(video);
  const attach = (stream) => {
    if (stream && video.srcObject !== stream) {
      video.srcObject = stream;
      video.play().catch(() => {});
    }
  };
  attach(ctx.videoStream);
  // the stream may arrive after mount (a renegotiation); look for it on the peer connection
  const timer = setInterval(() => {
    if (video.srcObject) return clearInterval(timer);
    const pc = ctx.peerConnection || globalThis.fay?.pc;
    const rx = pc?.getReceivers?.().find((r) => r.track?.kind === "video");
    if (rx) attach(new MediaStream([rx.track]));
  }, 250);
  const handle = {
    video,
    unmount() {
      clearInterval(timer);
      video.srcObject = null;
      video.remove();
    },
  };
  window.fayAvatar = handle;
  return handle;
}
