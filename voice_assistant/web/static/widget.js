/*
 * voice-assistant widget: one <script> tag puts a voice assistant button on any page.
 *
 *   <script src="https://assistant.example.com/widget.js" data-site-key="shop"></script>
 *
 * data-server (default: where this script came from), data-site-key, data-lang, data-theme (light|dark),
 * data-position (bottom-right|bottom-left). The script adds a <voice-assistant-widget> element whose open
 * shadow root exposes part="button", "status", "captions", "reset" and "panel" for ::part() theming; its
 * `state` attribute is idle, connecting, listening, thinking, speaking or error.
 *
 * It speaks the server's client contract: the STUN/TURN servers from {server}/webrtc/ice-servers, a WebRTC
 * offer to {server}/webrtc/offer (with the session id kept in localStorage, so a visitor who comes back
 * continues the conversation), the events on the "text" data channel, the spoken reply on the audio track.
 * No dependencies, no build step.
 */
(() => {
  "use strict";

  const TAG = "voice-assistant-widget";
  const script = document.currentScript;

  /** Wall-clock milliseconds, precise: comparable with the server's timestamps on the same machine. */
  const now = () => performance.timeOrigin + performance.now();

  const CONTRACT = new Set(["turn_started", "turn_ended", "reply_delta", "reply_done", "error", "reconnect"]);
  const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000, 15000];
  const RETRYABLE = new Set([0, 429, 502, 503, 504]);
  const DISCONNECT_GRACE_MS = 3000; // "disconnected" often heals by itself; "failed" never does
  const ICE_GATHERING_TIMEOUT_MS = 3000;
  const QUIET_MS = 500; // the spoken reply is over once the track has been this long quiet
  const AUDIBLE_RMS = 0.01;
  const CAPTIONS_KEPT = 20;

  const STRINGS = {
    en: {
      talk: "Talk to the assistant",
      stop: "Stop talking",
      idle: "Tap the microphone to talk",
      connecting: "Connecting…",
      reconnecting: "Connection lost: reconnecting…",
      listening: "Listening…",
      thinking: "Thinking…",
      speaking: "Speaking…",
      reset: "Start over",
      denied: "Microphone access was denied: allow it for this site to talk.",
      noMicrophone: "No microphone was found.",
      unreachable: "Cannot reach the assistant (the server is down or does not accept this site).",
      refused: "The assistant refused the connection",
      lost: "The connection was lost. Tap the microphone to try again.",
      retryIn: "try again in {s} s",
      busy: "The assistant is busy right now: trying again in {s} s…",
      busyLater: "The assistant is busy right now. Please try again in a few minutes.",
    },
    fr: {
      talk: "Parler à l'assistant",
      stop: "Arrêter",
      idle: "Touchez le micro pour parler",
      connecting: "Connexion…",
      reconnecting: "Connexion perdue : reconnexion…",
      listening: "À l'écoute…",
      thinking: "Réflexion…",
      speaking: "Réponse…",
      reset: "Recommencer",
      denied: "L'accès au micro a été refusé : autorisez-le pour ce site pour parler.",
      noMicrophone: "Aucun micro n'a été trouvé.",
      unreachable: "Impossible de joindre l'assistant (serveur arrêté, ou ce site n'est pas accepté).",
      refused: "L'assistant a refusé la connexion",
      lost: "La connexion a été perdue. Touchez le micro pour réessayer.",
      retryIn: "réessayez dans {s} s",
      busy: "L'assistant est très occupé en ce moment : nouvel essai dans {s} s…",
      busyLater: "L'assistant est très occupé en ce moment. Réessayez dans quelques minutes.",
    },
    de: {
      talk: "Mit dem Assistenten sprechen",
      stop: "Beenden",
      idle: "Zum Sprechen auf das Mikrofon tippen",
      connecting: "Verbinde…",
      reconnecting: "Verbindung verloren: verbinde neu…",
      listening: "Ich höre zu…",
      thinking: "Ich denke nach…",
      speaking: "Ich antworte…",
      reset: "Neu beginnen",
      denied: "Der Zugriff auf das Mikrofon wurde verweigert: bitte für diese Seite erlauben.",
      noMicrophone: "Kein Mikrofon gefunden.",
      unreachable: "Assistent nicht erreichbar (Server aus, oder diese Seite ist nicht zugelassen).",
      refused: "Der Assistent hat die Verbindung abgelehnt",
      lost: "Die Verbindung ist abgebrochen. Zum erneuten Versuch auf das Mikrofon tippen.",
      retryIn: "in {s} s erneut versuchen",
      busy: "Der Assistent ist gerade stark ausgelastet: neuer Versuch in {s} s…",
      busyLater: "Der Assistent ist gerade stark ausgelastet. Bitte in ein paar Minuten erneut versuchen.",
    },
    es: {
      talk: "Hablar con el asistente",
      stop: "Dejar de hablar",
      idle: "Toca el micrófono para hablar",
      connecting: "Conectando…",
      reconnecting: "Conexión perdida: reconectando…",
      listening: "Escuchando…",
      thinking: "Pensando…",
      speaking: "Respondiendo…",
      reset: "Empezar de nuevo",
      denied: "Se denegó el acceso al micrófono: permítelo para este sitio para hablar.",
      noMicrophone: "No se encontró ningún micrófono.",
      unreachable: "No se puede contactar con el asistente (servidor caído o este sitio no está admitido).",
      refused: "El asistente rechazó la conexión",
      lost: "Se perdió la conexión. Toca el micrófono para volver a intentarlo.",
      retryIn: "inténtalo de nuevo en {s} s",
      busy: "El asistente está muy ocupado ahora mismo: nuevo intento en {s} s…",
      busyLater: "El asistente está muy ocupado ahora mismo. Inténtalo de nuevo en unos minutos.",
    },
  };

  const STYLE = `
    :host {
      all: initial;
      --va-accent: #2563eb;
      --va-on-accent: #ffffff;
      --va-bg: #ffffff;
      --va-fg: #1f2937;
      --va-muted: #4b5563;
      --va-border: rgba(0, 0, 0, 0.12);
      --va-caption: #eef2ff;
      --va-error: #b91c1c;
      --va-thinking: #7c3aed;
      --va-speaking: #047857;
      position: fixed;
      bottom: 20px;
      right: 20px;
      z-index: 2147483000;
      display: flex;
      flex-direction: column;
      align-items: flex-end;
      gap: 10px;
    }
    :host([position="bottom-left"]) { right: auto; left: 20px; align-items: flex-start; }
    :host([theme="dark"]) {
      --va-accent: #3b82f6;
      --va-bg: #111827;
      --va-fg: #f3f4f6;
      --va-muted: #d1d5db;
      --va-border: rgba(255, 255, 255, 0.16);
      --va-caption: #1e293b;
      --va-error: #f87171;
      --va-thinking: #8b5cf6;
      --va-speaking: #059669;
    }
    .panel {
      /* Reset here, not on :host: a page's rules on the element itself win over :host ones, and what
         they set (letter-spacing, text-transform ...) would be inherited. */
      all: initial;
      color: var(--va-fg);
      font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
      text-align: start;
      box-sizing: border-box;
      width: min(320px, calc(100vw - 40px));
      padding: 10px 12px;
      display: flex;
      flex-direction: column;
      gap: 8px;
      background: var(--va-bg);
      border: 1px solid var(--va-border);
      border-radius: 12px;
      box-shadow: 0 8px 24px rgba(0, 0, 0, 0.18);
    }
    .captions { max-height: 180px; overflow-y: auto; display: flex; flex-direction: column; gap: 6px; }
    .captions:empty { display: none; }
    .captions p {
      margin: 0;
      padding: 6px 9px;
      border-radius: 8px;
      background: var(--va-caption);
      white-space: pre-wrap;
      overflow-wrap: anywhere;
    }
    .row { display: flex; align-items: center; gap: 8px; }
    .status { flex: 1; color: var(--va-muted); }
    :host([state="error"]) .status { color: var(--va-error); }
    .reset { all: unset; cursor: pointer; color: var(--va-accent); font-size: 13px; white-space: nowrap; }
    .reset[hidden] { display: none; }
    .reset:focus-visible, .mic:focus-visible { outline: 3px solid var(--va-accent); outline-offset: 3px; }
    .mic {
      all: initial;
      box-sizing: border-box;
      width: 56px;
      height: 56px;
      border-radius: 50%;
      display: grid;
      place-items: center;
      cursor: pointer;
      color: var(--va-on-accent);
      background: var(--va-accent);
      box-shadow: 0 6px 16px rgba(0, 0, 0, 0.25);
      transition: background 0.15s, transform 0.15s;
    }
    .mic:hover { transform: scale(1.05); }
    .mic svg { width: 26px; height: 26px; }
    :host([state="connecting"]) .mic { animation: va-breathe 1s ease-in-out infinite alternate; }
    :host([state="listening"]) .mic { animation: va-pulse 1.6s ease-out infinite; }
    :host([state="thinking"]) .mic { background: var(--va-thinking); }
    :host([state="speaking"]) .mic { background: var(--va-speaking); }
    :host([state="error"]) .mic { background: var(--va-error); }
    @keyframes va-pulse {
      from { box-shadow: 0 0 0 0 rgba(37, 99, 235, 0.55); }
      to { box-shadow: 0 0 0 18px rgba(37, 99, 235, 0); }
    }
    @keyframes va-breathe { from { opacity: 0.75; } to { opacity: 0.45; } }
    @media (prefers-reduced-motion: reduce) { .mic { animation: none !important; transition: none; } }
    audio { display: none; }
  `;

  const MICROPHONE_ICON = `<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2"
      stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><rect x="9" y="2" width="6"
      height="12" rx="3"/><path d="M5 10a7 7 0 0 0 14 0M12 17v4M8 21h8"/></svg>`;

  /** The server said no (or could not be reached: status 0); `message` is what the visitor reads. */
  class Refusal extends Error {
    constructor(message, status, retryAfterSeconds = 0) {
      super(message);
      this.status = status;
      this.retryAfterSeconds = retryAfterSeconds;
    }

    get retryable() {
      return RETRYABLE.has(this.status);
    }

    /** 503 with Retry-After: the server is full, overloaded or shutting down, not broken. */
    get busy() {
      return this.status === 503 && this.retryAfterSeconds > 0;
    }
  }

  /** Resolves once the offer holds every ICE candidate (the server takes no trickled ones). */
  function iceGathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      };
      const check = () => pc.iceGatheringState === "complete" && done();
      const timer = setTimeout(done, ICE_GATHERING_TIMEOUT_MS);
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  class VoiceAssistantWidget extends HTMLElement {
    static observedAttributes = ["lang", "server", "site-key"];

    /** Milliseconds (wall clock): element created, last click, first "listening" after it, first
     * caption of each turn. Host pages and tests read it. */
    timings = { created: now(), clicked: null, listening: null, captions: {} };

    #parts;
    #state = "idle";
    #message = null;
    #generation = 0; // each connection attempt's number: callbacks of an older one are ignored
    #attempt = 0; // reconnection attempts since the connection was last open
    #pc = null;
    #microphone = null;
    #retryTimer = 0;
    #dropTimer = 0;
    #quietTimer = 0;
    #meter = null; // {context, analyser, source, samples}: is the spoken reply still audible?
    #lastLoud = 0;
    #onPageHide = () => this.stop();

    constructor() {
      super();
      const root = this.attachShadow({ mode: "open" });
      root.innerHTML = `<style>${STYLE}</style>
        <div class="panel" part="panel">
          <div class="captions" part="captions" aria-live="polite"></div>
          <div class="row">
            <span class="status" part="status" role="status"></span>
            <button class="reset" part="reset" type="button"></button>
          </div>
        </div>
        <button class="mic" part="button" type="button">${MICROPHONE_ICON}</button>
        <audio part="audio" autoplay></audio>`;
      const part = (name) => root.querySelector(`[part="${name}"]`);
      this.#parts = {
        button: part("button"),
        status: part("status"),
        captions: part("captions"),
        reset: part("reset"),
        audio: part("audio"),
      };
      this.#parts.button.addEventListener("click", () => (this.active ? this.stop() : this.start()));
      this.#parts.reset.addEventListener("click", () => this.startOver());
    }

    connectedCallback() {
      window.addEventListener("pagehide", this.#onPageHide);
      this.#render();
    }

    disconnectedCallback() {
      window.removeEventListener("pagehide", this.#onPageHide);
      this.stop();
    }

    attributeChangedCallback() {
      this.#render();
    }

    /** Connecting or connected. */
    get active() {
      return !["idle", "error"].includes(this.#state);
    }

    get server() {
      return (this.getAttribute("server") || location.origin).replace(/\/+$/, "");
    }

    /** The conversation this visitor continues, or null. */
    get sessionId() {
      try {
        return localStorage.getItem(this.#storageKey);
      } catch {
        return null; // storage disabled: every visit is a new conversation
      }
    }

    get #storageKey() {
      return `voice-assistant:session:${this.server}:${this.getAttribute("site-key") || ""}`;
    }

    #remember(sessionId) {
      try {
        if (sessionId) localStorage.setItem(this.#storageKey, sessionId);
        else localStorage.removeItem(this.#storageKey);
      } catch {
        // storage disabled: nothing to remember
      }
      this.#render();
    }

    #t(name) {
      const lang = (this.getAttribute("lang") || "en").toLowerCase().split("-")[0];
      return (STRINGS[lang] ?? STRINGS.en)[name] ?? STRINGS.en[name];
    }

    // -- the visitor's actions

    start() {
      this.timings.clicked = now();
      this.timings.listening = null;
      this.#attempt = 0;
      this.#openMeter(); // inside the click: browsers let audio start only on a gesture
      this.#connect();
    }

    stop() {
      this.#generation++;
      clearTimeout(this.#retryTimer);
      clearTimeout(this.#dropTimer);
      this.#closePeer();
      this.#microphone?.getTracks().forEach((track) => track.stop());
      this.#microphone = null;
      this.#meter?.context.close();
      this.#meter = null;
      this.#setState("idle");
    }

    /** Forget the conversation: the next connection starts a new session. */
    startOver() {
      const wasActive = this.active;
      this.stop();
      this.#remember(null);
      this.#parts.captions.replaceChildren();
      if (wasActive) this.start();
    }

    // -- the connection

    async #connect() {
      const generation = ++this.#generation;
      this.#closePeer();
      this.#setState("connecting", this.#attempt ? this.#t("reconnecting") : null);
      try {
        if (!this.#microphone) {
          const microphone = await navigator.mediaDevices.getUserMedia({
            audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
          });
          if (generation !== this.#generation) {
            microphone.getTracks().forEach((track) => track.stop());
            return;
          }
          this.#microphone = microphone;
        }
        await this.#negotiate(generation);
      } catch (error) {
        if (generation === this.#generation) this.#failed(error);
      }
    }

    async #negotiate(generation) {
      const current = (handler) => (...args) => generation === this.#generation && handler(...args);
      const configuration = await this.#iceServers();
      if (generation !== this.#generation) return;
      const pc = new RTCPeerConnection(configuration);
      this.#pc = pc;
      for (const track of this.#microphone.getAudioTracks()) pc.addTrack(track, this.#microphone);
      const channel = pc.createDataChannel("text"); // the server sends the events on it
      channel.onopen = current(() => this.#opened());
      channel.onmessage = current((event) => this.#received(event.data));
      channel.onclose = current(() => this.#reconnect());
      pc.ontrack = current((event) => this.#play(event.streams[0] ?? new MediaStream([event.track])));
      pc.onconnectionstatechange = current(() => this.#connectionChanged(pc.connectionState));
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc);
      if (generation !== this.#generation) return;
      const answer = await this.#offer(pc.localDescription);
      if (generation !== this.#generation) return;
      await pc.setRemoteDescription(answer);
    }

    /** The server's STUN/TURN servers ({iceServers}), asked anew for each connection: TURN credentials
     * may be minted per connection and expire. Without an answer the browser's own defaults serve: the
     * offer that follows is what succeeds or fails, and says why, as it does with no TURN server at all. */
    async #iceServers() {
      try {
        const response = await fetch(`${this.server}/webrtc/ice-servers`, { headers: this.#siteHeaders() });
        if (response.ok) return { iceServers: (await response.json()).iceServers ?? [] };
      } catch {
        // unreachable, or refused by CORS: the offer tells which
      }
      return {};
    }

    #siteHeaders() {
      const siteKey = this.getAttribute("site-key");
      return siteKey ? { "X-Site-Key": siteKey } : {};
    }

    /** POST the offer; an answer is {type, sdp} and the session it belongs to is remembered. */
    async #offer(description) {
      const sessionId = this.sessionId;
      const body = {
        sdp: description.sdp,
        type: description.type,
        webrtc_id: crypto.randomUUID().replaceAll("-", ""),
        ...(sessionId && { session_id: sessionId }),
      };
      const headers = { "Content-Type": "application/json", ...this.#siteHeaders() };
      let response;
      try {
        response = await fetch(`${this.server}/webrtc/offer`, {
          method: "POST",
          headers,
          body: JSON.stringify(body),
        });
      } catch {
        throw new Refusal(this.#t("unreachable"), 0); // offline, or refused by CORS: no more is known
      }
      const answer = await response.json().catch(() => ({}));
      if (response.status === 404 && sessionId) {
        this.#remember(null); // the server no longer knows this conversation: begin a new one
        return this.#offer(description);
      }
      if (!response.ok) {
        const retryAfter = Number(response.headers.get("Retry-After")) || 0;
        throw new Refusal(answer.error || `HTTP ${response.status}`, response.status, retryAfter);
      }
      this.#remember(answer.session_id);
      return { type: answer.type, sdp: answer.sdp };
    }

    #opened() {
      this.#attempt = 0;
      this.timings.listening ??= now();
      this.#setState("listening");
    }

    #connectionChanged(state) {
      clearTimeout(this.#dropTimer);
      if (state === "failed" || state === "closed") this.#reconnect();
      else if (state === "disconnected") {
        this.#dropTimer = setTimeout(() => this.#reconnect(), DISCONNECT_GRACE_MS);
      }
    }

    /** A new connection to the same session, after a pause that grows with each failed attempt;
     * `cause`: the refusal that made it necessary, if any (a busy server: said politely). */
    #reconnect(cause = null) {
      if (this.#attempt >= RETRY_DELAYS_MS.length) {
        this.stop();
        this.#setState("error", cause?.busy ? this.#t("busyLater") : this.#t("lost"));
        return;
      }
      const retryAfterSeconds = cause?.retryAfterSeconds ?? 0;
      const delay = Math.max(RETRY_DELAYS_MS[this.#attempt], retryAfterSeconds * 1000);
      this.#attempt++;
      this.#generation++; // the dropped connection's late events no longer count
      this.#closePeer();
      const message = cause?.busy
        ? this.#t("busy").replace("{s}", Math.round(delay / 1000))
        : this.#t("reconnecting");
      this.#setState("connecting", message);
      clearTimeout(this.#retryTimer);
      this.#retryTimer = setTimeout(() => this.#connect(), delay);
    }

    #failed(error) {
      // A busy server is tried again after its Retry-After, even on the first attempt.
      if (error instanceof Refusal && error.retryable && (this.#attempt > 0 || error.busy)) {
        this.#reconnect(error);
        return;
      }
      this.stop();
      this.#setState("error", this.#describe(error));
    }

    #describe(error) {
      if (error?.name === "NotAllowedError" || error?.name === "SecurityError") return this.#t("denied");
      if (error?.name === "NotFoundError" || error?.name === "OverconstrainedError") {
        return this.#t("noMicrophone");
      }
      if (error instanceof Refusal) {
        if (error.status <= 0) return error.message;
        const seconds = error.retryAfterSeconds;
        const wait = seconds ? ` (${this.#t("retryIn").replace("{s}", seconds)})` : "";
        return `${this.#t("refused")}: ${error.message}${wait}`;
      }
      return `${this.#t("refused")}: ${error?.message ?? error}`;
    }

    #closePeer() {
      clearTimeout(this.#quietTimer);
      this.#pc?.close();
      this.#pc = null;
      this.#parts.audio.srcObject = null;
      this.#meter?.source?.disconnect();
    }

    // -- what the server says

    #received(raw) {
      let message;
      try {
        message = JSON.parse(raw);
      } catch {
        return;
      }
      if (!CONTRACT.has(message?.type)) return; // fastrtc's own messages share the channel
      const data = message.data ?? {};
      switch (message.type) {
        case "turn_started": // the visitor speaks (over a reply: the server stops it)
          clearTimeout(this.#quietTimer);
          this.#setState("listening");
          break;
        case "turn_ended":
          this.#setState("thinking");
          break;
        case "reply_delta":
          this.#caption(data.turn, data.text, false);
          this.#setState("speaking");
          break;
        case "reply_done":
          this.#caption(data.turn, data.text + (data.interrupted ? " …" : ""), true);
          if (this.#state === "thinking") this.#setState("listening"); // no text came: nothing to say
          else this.#untilQuiet();
          break;
        case "error":
          this.#setState(this.#state, `⚠ ${data.message}`);
          break;
        case "reconnect": // the server is going away: the conversation goes on on another one
          this.#attempt = 0;
          this.#reconnect();
          break;
      }
    }

    /** The live caption of one turn's reply: deltas append, `reply_done` has the final text. */
    #caption(turn, text, final) {
      const captions = this.#parts.captions;
      let line = captions.querySelector(`[data-turn="${Number(turn)}"]`);
      if (!line) {
        if (!text) return;
        line = document.createElement("p");
        line.dataset.turn = String(Number(turn));
        captions.append(line);
        this.timings.captions[turn] ??= now();
        while (captions.childElementCount > CAPTIONS_KEPT) captions.firstElementChild.remove();
      }
      line.textContent = final ? text : line.textContent + text;
      captions.scrollTop = captions.scrollHeight;
    }

    // -- the spoken reply

    #openMeter() {
      if (this.#meter) return;
      const context = new AudioContext();
      const analyser = context.createAnalyser();
      analyser.fftSize = 1024;
      this.#meter = { context, analyser, source: null, samples: new Float32Array(analyser.fftSize) };
    }

    #play(stream) {
      const audio = this.#parts.audio;
      audio.srcObject = stream; // Chrome feeds a remote stream to Web Audio only while an element plays it
      audio.play().catch(() => {});
      if (this.#meter) {
        this.#meter.source?.disconnect();
        this.#meter.source = this.#meter.context.createMediaStreamSource(stream);
        this.#meter.source.connect(this.#meter.analyser);
      }
    }

    #audible() {
      if (!this.#meter?.source) return false;
      const { analyser, samples } = this.#meter;
      analyser.getFloatTimeDomainData(samples);
      let energy = 0;
      for (const sample of samples) energy += sample * sample;
      return Math.sqrt(energy / samples.length) > AUDIBLE_RMS;
    }

    /** The text is complete; the voice may still be speaking it: "speaking" until the track is quiet. */
    #untilQuiet() {
      clearTimeout(this.#quietTimer);
      this.#lastLoud = now();
      const check = () => {
        if (this.#state !== "speaking") return;
        if (this.#audible()) this.#lastLoud = now();
        if (now() - this.#lastLoud >= QUIET_MS) this.#setState("listening");
        else this.#quietTimer = setTimeout(check, 100);
      };
      check();
    }

    // -- what the visitor sees

    #setState(state, message = null) {
      this.#state = state;
      this.#message = message;
      this.setAttribute("state", state);
      this.#render();
    }

    #render() {
      if (!this.#parts) return;
      const { button, status, reset } = this.#parts;
      status.textContent = this.#message ?? this.#t(this.#state);
      const label = this.active ? this.#t("stop") : this.#t("talk");
      button.setAttribute("aria-label", label);
      button.title = label;
      button.setAttribute("aria-pressed", String(this.active));
      reset.textContent = this.#t("reset");
      reset.hidden = !this.sessionId && !this.#parts.captions.childElementCount;
      if (!this.hasAttribute("state")) this.setAttribute("state", this.#state);
    }
  }

  if (!customElements.get(TAG)) customElements.define(TAG, VoiceAssistantWidget);

  // The <script> tag's data- attributes become the element's; a page may also write the element itself.
  if (script && !document.querySelector(TAG)) {
    const data = script.dataset;
    const widget = document.createElement(TAG);
    widget.setAttribute("server", data.server || new URL(script.src, location.href).origin);
    if (data.siteKey) widget.setAttribute("site-key", data.siteKey);
    widget.setAttribute("lang", data.lang || document.documentElement.lang || navigator.language || "en");
    widget.setAttribute("theme", data.theme === "dark" ? "dark" : "light");
    widget.setAttribute("position", data.position === "bottom-left" ? "bottom-left" : "bottom-right");
    const mount = () => document.body.append(widget);
    if (document.body) mount();
    else document.addEventListener("DOMContentLoaded", mount, { once: true });
  }
})();
