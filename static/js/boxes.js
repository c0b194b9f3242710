// Boxes drawn over an image on a canvas laid on it: the detect page's answer, the detection
// evaluation's gallery. `boxes`: [{box: [x1, y1, x2, y2] in the image's own pixels, colour, text, and
// optionally dash, width (of the line, 2 by default) and below (the text under the box, not above)}];
// `width` x `height`: those pixels' extent (the image may be shown at another size).
window.drawBoxes = function (canvas, img, width, height, boxes) {
  "use strict";
  const shownW = img.clientWidth, shownH = img.clientHeight;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(shownW * ratio);
  canvas.height = Math.round(shownH * ratio);
  canvas.style.width = shownW + "px";
  canvas.style.height = shownH + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, shownW, shownH);
  const sx = shownW / width, sy = shownH / height;
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "top";
  for (const b of boxes) {
    const [x1, y1, x2, y2] = b.box;
    const x = x1 * sx, y = y1 * sy, w = (x2 - x1) * sx, h = (y2 - y1) * sy;
    ctx.setLineDash(b.dash ? [4, 3] : []);
    ctx.lineWidth = b.width || 2;
    ctx.strokeStyle = b.colour;
    ctx.strokeRect(x, y, w, h);
    if (b.text) {
      const tw = ctx.measureText(b.text).width + 6;
      // Above the box (or inside its top edge at the image's top); below it (or inside its bottom edge).
      const ty = b.below ? (y + h + 16 <= shownH ? y + h : y + h - 16) : (y >= 16 ? y - 16 : y);
      ctx.fillStyle = b.colour;
      ctx.fillRect(x, ty, tw, 16);
      ctx.fillStyle = "#fff";
      ctx.fillText(b.text, x + 3, ty + 2);
    }
  }
  ctx.setLineDash([]);
  return boxes.length;
};
