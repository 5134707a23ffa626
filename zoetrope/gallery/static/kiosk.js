// Kiosk page: each new step arrives over Server-Sent Events; the image is preloaded, then crossfaded in;
// the caption is typed out (or faded in). If the stream drops, the last image stays and we reconnect.
(function () {
  "use strict";
  const cfg = JSON.parse(document.getElementById("zoetrope-config").textContent) || {};
  const root = document.documentElement;
  root.style.setProperty("--font-size", cfg.font_size || "2.2vw");
  root.style.setProperty("--crossfade", (cfg.crossfade_s ?? 1.5) + "s");
  const box = document.getElementById("caption-box");
  box.classList.add(cfg.position || "bottom", cfg.align || "center");
  const caption = document.getElementById("caption");
  const stepNumber = document.getElementById("step-number");
  stepNumber.hidden = !cfg.show_step;
  const layers = [document.getElementById("layer-a"), document.getElementById("layer-b")];
  let front = 0, shownKey = null, typing = null, source = null, retry = null;

  function setCaption(text) {
    caption.dataset.caption = text;
    if (typing) { clearTimeout(typing); typing = null; }
    if (cfg.caption_effect === "type") {
      const chars = Array.from(text);  // whole code points: RTL and emoji stay intact
      let i = 0;
      caption.textContent = "";
      const next = () => {
        caption.textContent = chars.slice(0, ++i).join("");
        typing = i < chars.length ? setTimeout(next, 40) : null;
      };
      if (chars.length) next();
    } else if (cfg.caption_effect === "fade") {
      caption.classList.add("fade", "hidden");
      typing = setTimeout(() => { caption.textContent = text; caption.classList.remove("hidden"); typing = null; }, 600);
    } else {
      caption.textContent = text;
    }
  }

  function show(step) {
    const key = step.run + ":" + step.step;
    if (key === shownKey) return;
    const img = new Image();
    img.onload = () => {
      if (key === shownKey) return;
      shownKey = key;
      const back = layers[1 - front];
      back.src = img.src;
      back.classList.add("on");
      layers[front].classList.remove("on");
      front = 1 - front;
      caption.dataset.step = String(step.step);
      stepNumber.textContent = String(step.step);
      setCaption(step.caption || "");
    };
    img.onerror = () => {};  // keep showing the last image
    img.src = step.image;
  }

  function connect() {
    if (retry) { clearTimeout(retry); retry = null; }
    source = new EventSource("/events");
    source.addEventListener("step", (e) => { try { show(JSON.parse(e.data)); } catch (err) { /* ignore */ } });
    source.onopen = () => { document.body.dataset.connected = "yes"; };
    source.onerror = () => {
      document.body.dataset.connected = "no";
      if (source.readyState === EventSource.CLOSED) {  // the browser gave up: we do not
        source.close();
        retry = setTimeout(connect, 2000);
      }
    };
  }
  connect();
})();
