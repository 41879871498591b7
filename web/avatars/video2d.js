// Viewer of the `video2d` renderer: the server draws the talking portrait (with its "AI-generated" mark) and sends
// it as the WebRTC video track; this shows ctx.videoStream in a <video> element.
//
// Audio and video frames leave the server together (both released by the playout clock, video frames stamped
// with their audio's PTS) and the browser's own A/V sync (RTCP sender reports) lines them up; it moves slowly,
// though (tens of ms per second), while the audio jitter buffer can jump by hundreds of ms after a network or
// server hiccup. So the viewer also asks for a video jitter-buffer target equal to the audio's current
// jitter-buffer delay (RTCRtpReceiver.jitterBufferTarget), which keeps the lips from running ahead of the sound.
// Option: video_sync: false leaves it to the browser alone.

export async function mount(container, ctx) {
  const options = ctx.options || {};
  const video = document.createElement("video");
  video.className = "fay-avatar-video";
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true; // the answer audio plays in ctx.audioElement
  video.style.objectFit = "contain"; // the whole frame, its "AI-generated" mark included
  container.appendChild(video);
  const pcOf = () => ctx.peerConnection || globalThis.fay?.pc;
  const attach = (stream) => {
    if (stream && video.srcObject !== stream) {
      video.srcObject = stream;
      video.play().catch(() => {});
    }
  };
  attach(ctx.videoStream);
  const handle = { video, targetMs: null, audioDelayMs: null };
  let prev = null;
  const timer = setInterval(async () => {
    const pc = pcOf();
    if (!video.srcObject) { // the stream may arrive after mount: look for it on the peer connection
      const rx = pc?.getReceivers?.().find((r) => r.track?.kind === "video");
      if (rx) attach(new MediaStream([rx.track]));
      return;
    }
    if (options.video_sync === false || !pc) return;
    const vrx = pc.getReceivers().find((r) => r.track?.kind === "video");
    if (!vrx || !("jitterBufferTarget" in vrx)) return;
    try {
      const stats = await pc.getStats();
      let audio = null, out = null, video = null;
      stats.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "audio") audio = { d: s.jitterBufferDelay, n: s.jitterBufferEmittedCount };
        if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded) {
          video = { decode: s.totalDecodeTime / s.framesDecoded };
        }
        if (s.type === "media-playout" && s.totalSamplesCount) out = { d: s.totalPlayoutDelay, n: s.totalSamplesCount };
      });
      if (!audio || !audio.n) return;
      if (prev && audio.n > prev.n) {
        // the audio waits in the jitter buffer, then in the output (media-playout stats); the video frame is
        // decoded after its jitter buffer
        let ms = ((audio.d - prev.d) / (audio.n - prev.n)) * 1000;
        if (out && prev.out && out.n > prev.out.n) ms += ((out.d - prev.out.d) / (out.n - prev.out.n)) * 1000;
        if (video) ms -= video.decode * 1000;
        handle.audioDelayMs = handle.audioDelayMs === null ? ms : 0.5 * handle.audioDelayMs + 0.5 * ms;
        const target = Math.min(4000, Math.max(0, Math.round(handle.audioDelayMs)));
        if (handle.targetMs === null || Math.abs(target - handle.targetMs) > 20) {
          vrx.jitterBufferTarget = target;
          handle.targetMs = target;
        }
      }
      prev = { ...audio, out };
    } catch {
      /* the connection went away */
    }
  }, 500);
  handle.unmount = () => {
    clearInterval(timer);
    video.srcObject = null;
    video.remove();
  };
  window.fayAvatar = handle;
  return handle;
}
