// The terminal of a container: xterm.js over one WebSocket per session
// (see hostpanel/terminal/consumers.py). Typed keys go out as binary frames, the
// window size as JSON {"type": "resize"}; output comes back as binary frames, and
// JSON frames say how the session goes ("status", "exit", "error").
//
// The page's CSP allows no inline styles (style-src 'self'), but xterm.js puts its
// computed CSS (cell size, theme colours) into <style> elements it creates, which the
// browser would refuse. Those elements are made inert and their text is mirrored into
// constructed style sheets (document.adoptedStyleSheets), which come from this script.
// (xterm also sets a style attribute for 24-bit colours; those few are refused.)
(function () {
  "use strict";

  var encoder = new TextEncoder();

  // ---- xterm's <style> elements -> constructed style sheets ---------------------------
  // The browser checks a <style> element against the CSP as soon as it is in the document
  // (whatever its type), so a <style> asked for through document.createElement on this page
  // (only xterm asks: htmx is configured not to) is made as a hidden <hp-xterm-style> element
  // instead: never parsed as CSS, so never a violation. While it is in the document, its text
  // is mirrored into a constructed sheet.
  var MARK = "data-mirrored-style";
  var mirrored = new Map();  // element -> CSSStyleSheet

  function inertStyles() {
    var create = Document.prototype.createElement;
    Document.prototype.createElement = function (name, options) {
      if (String(name).toLowerCase() !== "style") { return create.call(this, name, options); }
      var element = create.call(this, "hp-xterm-style");
      element.hidden = true;
      element.setAttribute(MARK, "");
      return element;
    };
  }

  function mirror(element) {
    var sheet = mirrored.get(element);
    if (!sheet) {
      sheet = new CSSStyleSheet();
      mirrored.set(element, sheet);
      document.adoptedStyleSheets = document.adoptedStyleSheets.concat([sheet]);
      new MutationObserver(function () { sheet.replaceSync(element.textContent || ""); })
        .observe(element, { childList: true, characterData: true, subtree: true });
    }
    sheet.replaceSync(element.textContent || "");
  }

  function unmirror(element) {
    var sheet = mirrored.get(element);
    if (!sheet) { return; }
    mirrored.delete(element);
    document.adoptedStyleSheets = document.adoptedStyleSheets.filter(function (s) { return s !== sheet; });
  }

  function eachMarked(node, action) {
    if (node.nodeType !== Node.ELEMENT_NODE) { return; }
    if (node.hasAttribute(MARK)) { action(node); }
    node.querySelectorAll("[" + MARK + "]").forEach(action);
  }

  function mirrorStyles() {
    if (!("adoptedStyleSheets" in document)) { return; }
    inertStyles();
    new MutationObserver(function (records) {
      records.forEach(function (record) {
        record.addedNodes.forEach(function (node) { eachMarked(node, mirror); });
        record.removedNodes.forEach(function (node) { eachMarked(node, unmirror); });
      });
    }).observe(document.documentElement, { childList: true, subtree: true });
  }

  // ---- one terminal ---------------------------------------------------------------------
  function TerminalView(root) {
    this.root = root;
    this.screen = root.querySelector(".exec-terminal-screen");
    this.status = root.querySelector(".exec-terminal-status");
    this.button = root.querySelector(".exec-terminal-open");
    this.term = null;
    this.fit = null;
    this.socket = null;
    this.ended = false;
    var self = this;
    this.button.addEventListener("click", function () { self.open(); });
    window.addEventListener("resize", function () { self.refit(); });
  }

  TerminalView.prototype.setState = function (state, text) {
    this.root.setAttribute("data-state", state);
    this.status.textContent = text;
  };

  TerminalView.prototype.ensureTerminal = function () {
    if (this.term) { this.term.reset(); return; }
    var self = this;
    this.term = new Terminal({ cursorBlink: true, scrollback: 5000, fontSize: 14 });
    this.fit = new FitAddon.FitAddon();
    this.term.loadAddon(this.fit);
    this.term.open(this.screen);
    this.term.onData(function (data) { self.sendBytes(encoder.encode(data)); });
    this.term.onBinary(function (data) {
      var bytes = new Uint8Array(data.length);
      for (var i = 0; i < data.length; i++) { bytes[i] = data.charCodeAt(i) & 0xff; }
      self.sendBytes(bytes);
    });
    this.term.onResize(function (size) {
      self.sendJson({ type: "resize", rows: size.rows, cols: size.cols });
    });
  };

  TerminalView.prototype.refit = function () {
    if (!this.fit) { return; }
    var self = this;
    if (this.fitFrame) { return; }
    this.fitFrame = window.requestAnimationFrame(function () {
      self.fitFrame = 0;
      try { self.fit.fit(); } catch (e) { /* hidden: nothing to measure */ }
    });
  };

  TerminalView.prototype.sendBytes = function (bytes) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) { this.socket.send(bytes); }
  };

  TerminalView.prototype.sendJson = function (message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) { this.socket.send(JSON.stringify(message)); }
  };

  TerminalView.prototype.open = function () {
    var self = this;
    this.ended = false;
    this.setState("connecting", "connecting…");
    this.ensureTerminal();
    try { this.fit.fit(); } catch (e) { /* keep the default size */ }
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + window.location.host + this.root.getAttribute("data-ws-path") +
      "?rows=" + this.term.rows + "&cols=" + this.term.cols;
    var socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.addEventListener("message", function (event) {
      if (typeof event.data === "string") { self.onMessage(JSON.parse(event.data)); }
      else { self.term.write(new Uint8Array(event.data)); }
    });
    socket.addEventListener("close", function (event) {
      if (self.socket !== socket) { return; }
      self.socket = null;
      self.button.textContent = "Open a new shell";
      if (!self.ended) {
        self.setState("error", "disconnected" + (event.code ? " (code " + event.code + ")" : ""));
      }
    });
  };

  TerminalView.prototype.onMessage = function (message) {
    if (message.type === "status") {
      if (message.state === "connected") {
        this.setState("connected", "connected");
        this.term.focus();
      } else {
        this.setState("connecting", message.state + "…");
      }
    } else if (message.type === "exit") {
      this.ended = true;
      var text = "exited with code " + message.code;
      if (message.reason && message.reason !== "exited") { text += " (" + message.reason + ")"; }
      this.setState("exited", text);
    } else if (message.type === "error") {
      this.ended = true;
      this.setState("error", "error: " + message.message);
    }
  };

  function start() {
    mirrorStyles();
    document.querySelectorAll(".exec-terminal[data-ws-path]").forEach(function (root) { new TerminalView(root); });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); }
  else { start(); }
})();
