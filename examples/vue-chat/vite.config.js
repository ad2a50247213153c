import { defineConfig } from "vite";
import vue from "@vitejs/plugin-vue";

// `npm run dev` serves the app on :5173 and forwards /cable to a cable-server on :8000;
// `npm run build` writes dist/, which `cable-server` (no argument) serves at /.
export default defineConfig({
  plugins: [vue()],
  server: { proxy: { "/cable": { target: "ws://127.0.0.1:8000", ws: true } } },
  build: { outDir: "dist", emptyOutDir: true },
});
