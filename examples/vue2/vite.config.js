import { defineConfig } from "vite";

// Templates are compiled in the browser (no .vue files), so use Vue 2's full build.
export default defineConfig({
  resolve: { alias: { vue: "vue/dist/vue.esm.js" } },
  build: { outDir: "dist", emptyOutDir: true },
});
